"""The Open Inference Protocol (KServe V2) REST edge, with Triton's binary tensors.

``/v2`` parses the protocol and calls the same use case as ``/predict``
(:mod:`chalicelib.inference`): resolve the model, infer. It does not store
or archive anything: it is the stateless, fast path. Model names are the
store's names (``mlp.onnx``), percent-encoded once in the path.

Errors are the protocol's ``{"error": "<message>"}``, with the status and,
as extra fields, our ``code`` and ``requestId`` (stock clients show the
message). docs/protocol.md is the reference.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from chalice.app import Chalice, Response

from chalicelib import http, inference, model_check, versions
from chalicelib.codecs import binary, json_tensors
from chalicelib.config import Settings, human_size
from chalicelib.datatypes import BY_OIP, Datatype, of_numpy
from chalicelib.errors import FileTooLarge, InvalidRequest, NotFound, ProcessingFailed, ResourceExhausted
from chalicelib.model_cache import CachedModel, ModelCache
from chalicelib.names import MODELS, ObjectRef, parse_path_name
from chalicelib.signature import TensorInfo
from chalicelib.store import Manifest, Store

SERVER_NAME = "efs-ml"
PROTOCOL_VERSION = "2"
EXTENSIONS = ("binary_tensor_data",)
JSON_HEADERS = {"Content-Type": "application/json"}


def endpoint(app: Chalice) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """:func:`chalicelib.http.endpoint`, with errors in the protocol's shape:
    ``{"error": message, "code": CODE, "requestId": ..., <our extra field>}``."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        wrapped = http.endpoint(app)(view)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            response = wrapped(*args, **kwargs)
            return protocol_error(response)

        return wrapper

    return decorate


def protocol_error(response: Response) -> Response:
    """An error response of ours reshaped for the protocol; anything else as it is."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and isinstance(body.get("message"), str):
        reshaped = {"error": body["message"], "code": body.get("error")}
        reshaped.update((k, v) for k, v in body.items() if k not in ("error", "message"))
        response.body = reshaped
    return response


def model_ref(name: str) -> ObjectRef:
    """The model a path names (percent-encoded once), or InvalidRequest."""
    return ObjectRef(MODELS, parse_path_name(name, "model name"))


def parse_version(raw: str | None) -> int | None:
    """A path's version: a positive integer (``None``: the current version)."""
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise InvalidRequest("Model version must be a positive integer")
    return int(raw)


def live() -> dict[str, Any]:
    """The server process answers."""
    return {"live": True}


def ready(store: Store) -> Response:
    """Ready when the store's root is there to read models from (503 otherwise).
    One stat, no write: probes come often, and serving needs only reads."""
    ok = os.path.isdir(store.root)
    return Response(body={"ready": ok}, status_code=200 if ok else 503, headers=dict(JSON_HEADERS))


def server_metadata() -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    return {"name": SERVER_NAME, "version": PROTOCOL_VERSION, "extensions": list(EXTENSIONS)}


def _manifest(store: Store, ref: ObjectRef, version: int | None) -> Manifest:
    try:
        return versions.manifest_at(store, ref, version)
    except NotFound as exc:
        # /predict's message stays the seed's; the protocol's names the model.
        if exc.message == NotFound.DEFAULT_MESSAGE:
            raise NotFound(None, f"Model '{ref.name}' not found") from None
        raise


def _resolve(models: ModelCache, store: Store, ref: ObjectRef, version: int | None) -> CachedModel:
    try:
        cached, _ = inference.resolve(models, store, ref, version)
    except NotFound as exc:
        # /predict's message stays the seed's; the protocol's names the model.
        if exc.message == NotFound.DEFAULT_MESSAGE:
            raise NotFound(None, f"Model '{ref.name}' not found") from None
        raise
    return cached


def model_ready(store: Store, ref: ObjectRef, version: int | None) -> dict[str, Any]:
    """200 with ``ready`` for a stored model (and version); 404 NOT_FOUND otherwise."""
    manifest = _manifest(store, ref, version)
    return {"name": ref.name, "version": str(manifest.version), "ready": True}


def model_metadata(store: Store, models: ModelCache, ref: ObjectRef, version: int | None) -> dict[str, Any]:
    """The model's platform, inputs and outputs: the signature recorded with
    its manifest at ingest (read from the stored bytes for a model stored
    before signatures were recorded), else read from the loaded model; and
    the versions the store keeps."""
    manifest = _manifest(store, ref, version)
    described = model_check.recorded(store, ref, manifest)
    signature = described.signature
    if described.format != model_check.OPAQUE_FORMAT and not signature.inputs:
        # Nothing could be read from the bytes alone: ask the loaded model.
        cached = _resolve(models, store, ref, version)
        signature = cached.runner.metadata()
        manifest = cached.manifest
    current = manifest if version is None else (store.manifest(ref) or manifest)
    return {
        "name": ref.name,
        "versions": [str(n) for n in sorted(current.kept())],
        "platform": signature.platform,
        "inputs": [_tensor_metadata(t) for t in signature.inputs],
        "outputs": [_tensor_metadata(t) for t in signature.outputs],
    }


def _tensor_metadata(info: TensorInfo) -> dict[str, Any]:
    # What has no protocol datatype (ONNX-ML's sequences of maps, bfloat16)
    # is described by its ONNX type rather than passed off as a tensor.
    entry: dict[str, Any] = {
        "name": info.name,
        "datatype": info.datatype or info.onnx_type,
        "shape": [] if info.shape is None else list(info.shape),
    }
    parameters: dict[str, Any] = {"onnx_type": info.onnx_type} if info.onnx_type else {}
    if info.shape is None:
        parameters["shape_known"] = False
    if parameters:
        entry["parameters"] = parameters
    return entry


@dataclass
class InferRequest:
    """A parsed infer request: its id, parameters, inputs and wanted outputs."""

    id: str | None
    parameters: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[tuple[str, bool | None]] | None  # (name, binary_data) or None: all
    binary_output: bool = False
    rest: memoryview = field(default_factory=lambda: memoryview(b""))


@dataclass(frozen=True)
class Body:
    """An infer request's body as it arrived."""

    raw: bytes
    header_length: str | None
    """``Inference-Header-Content-Length``: set when binary tensors follow the JSON."""
    binary_ok: bool
    """Whether the client's ``Accept`` takes a binary answer (API Gateway and
    Chalice return one only then); if not, outputs asked as binary come as JSON."""


def accepts_binary(accept: str | None) -> bool:
    """Whether an ``Accept`` header matches the binary content type (or ``*/*``)."""
    if not accept:
        return False
    media = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(media & {binary.CONTENT_TYPE, "application/*", "*/*"})


def read_body(app: Chalice, settings: Settings) -> Body:
    """The raw request body (bytes, base64 already undone by Chalice) and its
    binary header length, bounded by the limits of its kind."""
    raw, headers = http.raw_body(app)
    header_length = headers.get(binary.HEADER_LENGTH)
    limit = settings.max_request_bytes if header_length is None else settings.max_binary_body_bytes
    if len(raw) > limit:
        raise FileTooLarge(
            limit,
            f"Request body exceeds {human_size(limit)}"
            + (" (a binary body travels base64-encoded within Lambda's 6 MB)" if header_length is not None else ""),
        )
    return Body(raw, header_length, accepts_binary(headers.get("accept")))


def parse_infer(raw: bytes, header_length: Any) -> InferRequest:
    """The request's JSON header (and where its binary tensors are), or InvalidRequest."""
    header, rest = binary.split(raw, header_length)
    try:
        doc = json_tensors.loads(header)
    except ValueError:
        raise InvalidRequest(
            "Request body must be valid JSON (with binary tensors: send Inference-Header-Content-Length)"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidRequest("Request body must be a JSON object")
    # Other fields are ignored: clients add their own (kserve sends "model_name").
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidRequest("'id' must be a string")
    parameters = _parameters(doc, "request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise InvalidRequest("'inputs' must be a non-empty list of tensors ({name, shape, datatype, data})")
    outputs = doc.get("outputs")
    wanted: list[tuple[str, bool | None]] | None = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise InvalidRequest("'outputs' must be a list of {name, parameters?}")
        wanted = []
        for out in outputs:
            flag = _parameters(out, f"output '{out['name'][:60]}'").get("binary_data")
            wanted.append((out["name"], flag if isinstance(flag, bool) else None))
    return InferRequest(rid, parameters, inputs, wanted, parameters.get("binary_data_output") is True, rest)


def _parameters(doc: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"'parameters' of the {where} must be an object")
    return parameters


def decode_inputs(req: InferRequest, budget: int, limit: int) -> dict[str, Any]:
    """Every input as a numpy array: JSON ``data`` or its bytes in the binary rest."""
    feeds: dict[str, Any] = {}
    offset = 0
    for tensor in req.inputs:
        name = tensor.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("Every input needs a 'name' (a string)")
        if name in feeds:
            raise InvalidRequest(f"Input '{name[:60]}' is given twice")
        size = _parameters(tensor, f"input '{name[:60]}'").get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(req.rest):
                raise InvalidRequest(
                    f"Input '{name[:60]}' has binary_data_size {str(size)[:20]}, past the "
                    f"{len(req.rest) - offset} binary bytes left in the body"
                )
            if "data" in tensor:
                raise InvalidRequest(f"Input '{name[:60]}' has both 'data' and binary_data_size")
            array = binary.decode(
                name, tensor.get("datatype"), tensor.get("shape"), req.rest[offset : offset + size], budget, limit
            )
            offset += size
        else:
            array = json_tensors.oip_array(
                name, tensor.get("datatype"), tensor.get("shape"), tensor.get("data"), budget, limit
            )
        budget -= array.size
        feeds[name] = array
    if offset != len(req.rest):
        raise InvalidRequest(
            f"The body has {len(req.rest) - offset} binary bytes that no input's binary_data_size claims"
        )
    return feeds


def infer(
    store: Store, settings: Settings, models: ModelCache, ref: ObjectRef, version: int | None, body: Body
) -> Response:
    """Parse, resolve, infer, encode: the protocol's infer response (JSON, or
    JSON header plus binary outputs). Nothing is stored."""
    req = parse_infer(body.raw, body.header_length)
    cached = _resolve(models, store, ref, version)
    feeds = decode_inputs(req, settings.max_tensor_elements, settings.max_tensor_elements)
    names = None if req.outputs is None else [name for name, _ in req.outputs]
    outputs = inference.infer(cached, feeds, names)
    flags = dict(req.outputs or ())
    header: dict[str, Any] = {"model_name": ref.name, "model_version": str(cached.manifest.version)}
    if req.id is not None:
        header["id"] = req.id
    chunks: list[Any] = []
    encoded = []
    for name, value in outputs.items():
        flag = flags.get(name)
        as_binary = body.binary_ok and (req.binary_output if flag is None else flag)
        entry, chunk = _encode_output(name, value, as_binary)
        encoded.append(entry)
        if chunk is not None:
            chunks.append(chunk)
    header["outputs"] = encoded
    head = json_tensors.dumps(header)
    if not chunks:
        if len(head) > settings.max_response_bytes:
            raise ResourceExhausted(
                f"The response would be {len(head)} bytes of JSON, over MAX_RESPONSE_BYTES "
                f"({settings.max_response_bytes}); ask for binary outputs (binary_data_output)"
            )
        # str: Lambda's response is JSON text (bytes are only for binary types).
        return Response(body=head.decode("utf-8"), status_code=200, headers=dict(JSON_HEADERS))
    size = len(head) + sum(len(c) for c in chunks)
    if size > settings.max_binary_body_bytes:
        raise ResourceExhausted(
            f"The response would be {size} bytes, over MAX_BINARY_BODY_BYTES ({settings.max_binary_body_bytes})"
        )
    return http.BinaryResponse(
        body=b"".join([head, *chunks]),
        status_code=200,
        headers={"Content-Type": binary.CONTENT_TYPE, binary.HEADER_LENGTH: str(len(head))},
    )


def _encode_output(name: str, value: Any, as_binary: bool) -> tuple[dict[str, Any], Any]:
    import numpy as np

    if isinstance(value, np.ndarray):
        datatype = of_numpy(value.dtype.name, value.dtype.kind)
        if datatype is None:
            raise ProcessingFailed(f"Output '{name}' has dtype {value.dtype}, which the protocol cannot carry")
        array = value
    else:
        # Sequences and maps (ONNX-ML classifiers): one JSON text per element.
        datatype = BY_OIP["BYTES"]
        items = value if isinstance(value, (list, tuple)) else [value]
        array = np.array([json_tensors.dumps(json_tensors.plain(v)).decode("utf-8") for v in items], dtype=object)
    entry: dict[str, Any] = {"name": name, "datatype": datatype.oip, "shape": list(array.shape)}
    if not isinstance(value, np.ndarray):
        entry["parameters"] = {"content_type": "application/json"}
    if as_binary:
        chunk = binary.encode(array, datatype)
        entry.setdefault("parameters", {})["binary_data_size"] = len(chunk)
        return entry, chunk
    entry["data"] = _json_data(array, datatype)
    return entry, None


def _json_data(array: Any, datatype: Datatype) -> Any:
    if datatype.oip == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.flat]
    # orjson writes numpy buffers directly (NaN and infinities as null: JSON has neither).
    return array.reshape(-1)
