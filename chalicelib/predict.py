"""Predict (the seed's edge): resolve, infer, store, respond.

Resolving and running the model is the use case every edge shares
(:mod:`chalicelib.inference`); what is ``/predict``'s own is the seed's JSON
inputs, the result document stored atomically and archived to S3, and the
documented response body.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from chalicelib import inference, jsontext, observability, s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound, ResourceExhausted
from chalicelib.inference import record_model_lookup
from chalicelib.model_cache import CachedModel, ModelCache
from chalicelib.names import INPUTS, OUTPUTS, ObjectRef, validate_name
from chalicelib.store import Store
from chalicelib.validation import PredictRequest

__all__ = ["predict", "record_model_lookup", "store_and_archive"]


def output_ref(file_id: str) -> ObjectRef:
    """Where the result for ``file_id`` is stored."""
    return ObjectRef(OUTPUTS, f"{file_id}.result")


class StoredInput:
    """An ingested input, read only if and as far as the runner asks.

    ``head`` serves headers (an ``.npy``'s shape and dtype) without reading
    the body; ``read`` reads the whole file verified against its manifest.
    """

    def __init__(self, store: Store, ref: ObjectRef, size: int) -> None:
        self.store = store
        self.ref = ref
        self.name = ref.name
        self.size = size

    def head(self, n: int) -> bytes:
        try:
            with self.store.open(self.ref) as (_, f):
                return f.read(n)
        except FileNotFoundError:
            raise NotFound(self.ref.name, "Input file not found on EFS") from None

    def read(self) -> bytes:
        try:
            _, data = self.store.read_bytes(self.ref)
        except FileNotFoundError:
            raise NotFound(self.ref.name, "Input file not found on EFS") from None
        return data


def stored_input(store: Store, file_id: str) -> StoredInput | None:
    """The ingested input a fileId names, if it names one (``inputs/…``); nothing is read yet."""
    ref = store.lookup_file_id(file_id)
    if ref is None or ref.kind != INPUTS:
        return None
    manifest = store.manifest(ref)
    if manifest is None:
        raise NotFound(file_id, "Input file not found on EFS")
    return StoredInput(store, ref, manifest.size)


def named_input(store: Store, ref: ObjectRef) -> tuple[StoredInput, str]:
    """The ingested input ``ref`` (``"input"`` of the request) and its fileId; 404 if absent."""
    manifest = store.manifest(ref)
    if manifest is None:
        raise NotFound(None, f"Input '{ref.name}' not found on EFS")
    return StoredInput(store, ref, manifest.size), manifest.fileId


def result_url(settings: Settings, s3_key: str | None) -> dict[str, Any]:
    """``{"url", "expiresIn"}``: a presigned GET of an archived result (``url`` None if not archived)."""
    if s3_key is None or not settings.bucket:
        return {"url": None, "expiresIn": None}
    expires = settings.result_url_expires_seconds
    return {"url": s3.presign_get(settings, settings.bucket, s3_key, expires), "expiresIn": expires}


def result_link(store: Store, settings: Settings, file_id: str) -> dict[str, Any]:
    """``GET /results/{fileId}``: where a stored result is, and a presigned GET of its archive.

    ``fileId`` is a /predict result's fileId or the name of a job's output
    file (``<jobId>.<output>.npy``); 404 if neither is stored.
    """
    validate_name(file_id, "fileId")
    for ref in (output_ref(file_id), ObjectRef(OUTPUTS, file_id)):
        manifest = store.manifest(ref)
        if manifest is not None:
            s3_key = ref.key if settings.bucket else None
            return {
                "fileId": file_id,
                "efsPath": store.path(ref),
                "s3Key": s3_key,
                "sizeBytes": manifest.size,
                "sha256": manifest.sha256,
                "updated": manifest.updated,
                **result_url(settings, s3_key),
            }
    raise NotFound(file_id, f"No stored result '{file_id}'")


def by_reference(document: bytes, settings: Settings) -> bool:
    """Whether a result document is too big to answer with (Lambda's 6 MB
    response limit, MAX_RESPONSE_BYTES): it is then stored and archived as
    usual and answered by reference (``s3Key``, ``efsPath``). What bounds
    the document itself is MAX_OUTPUT_ELEMENTS, checked by the runner."""
    return len(document) > settings.max_response_bytes


@dataclass(frozen=True)
class Inferred:
    """What one /predict ran: the resolved model and its JSON-ready result."""

    file_id: str
    model: ObjectRef
    cached: CachedModel
    hit: bool
    result: dict[str, Any]


def predict(store: Store, settings: Settings, models: ModelCache, req: PredictRequest) -> dict[str, Any]:
    """Run ``req.model`` (loaded through the warm cache ``models``) and return
    the documented /predict response body."""
    started = time.perf_counter()
    inputs, input_source, file_id = request_inputs(store, req)
    cached, hit = inference.resolve(models, store, req.model, req.version, file_id)
    if inputs is None and cached.runner.takes_inputs:  # the seed's opaque predict ignores an input's fileId
        found = stored_input(store, file_id)
        if found is not None:
            inputs, input_source = found, found.name
    done = Inferred(file_id, req.model, cached, hit, cached.runner.predict(inputs, input_source))
    return respond(store, settings, req, done, result_document(done), started)


def request_inputs(store: Store, req: PredictRequest) -> tuple[Any, str | None, str]:
    """The request's inputs (inline JSON, a named ingested input or none yet),
    where they came from, and the fileId the result is stored under."""
    inputs: Any = req.inputs
    input_source = "inline" if inputs is not None else None
    file_id = req.file_id
    if req.input is not None:
        inputs, input_id = named_input(store, req.input)
        input_source = inputs.name
        file_id = file_id or input_id
    if file_id is None:  # parse_predict requires fileId unless input is given
        raise InvalidRequest("Request body must contain 'fileId' and 'model' fields")
    return inputs, input_source, file_id


def result_document(done: Inferred) -> bytes:
    """The stored result: no timings, so the same request always produces
    the same bytes and a repeat is an idempotent no-op on the store.

    Written by orjson (:mod:`chalicelib.jsontext`), keys sorted: a tenth of json.dumps's time on an
    image model's outputs (0.29 ms for 512 floats, measured in row 2). Its
    text differs from json.dumps's in small exponents (``1e-5``, not
    ``1e-05``) and in non-ASCII (UTF-8, not ``\\u`` escapes), so after an
    upgrade the first repeat of a request stored before rewrites its
    result once, with the same values."""
    manifest = done.cached.manifest
    doc = {
        "fileId": done.file_id,
        "model": done.model.name,
        "modelVersion": manifest.version,
        "modelSha256": manifest.sha256,
        "result": done.result,
    }
    return jsontext.dumps(doc, sort_keys=True)


def respond(
    store: Store,
    settings: Settings,
    req: PredictRequest,
    done: Inferred,
    document: bytes,
    started: float,
) -> dict[str, Any]:
    """Store and archive the result (unless ``"store": false``) and return the
    documented /predict response body (the result by reference when too big,
    with a presigned GET ``url`` of its archive)."""
    manifest = done.cached.manifest
    ref = output_ref(done.file_id)
    referenced = by_reference(document, settings)
    if not req.store and referenced:
        raise ResourceExhausted(
            f"The result is {len(document)} bytes, more than one answer may carry (MAX_RESPONSE_BYTES = "
            f'{settings.max_response_bytes}); it can only be answered by reference: send "store": true'
        )
    s3_key = None
    if req.store:
        s3_key = store_and_archive(store, settings, ref, document, source=f"predict:{req.model.key}")
    extra: dict[str, Any] = {}
    if referenced:
        observability.annotate(resultByReference=True)
        # Readable by anyone who holds the API key, not only by AWS principals.
        extra = result_url(settings, s3_key)
    return {
        "fileId": done.file_id,
        "efsPath": store.path(ref) if req.store else None,
        "s3Key": s3_key,
        **extra,
        "durationMs": round((time.perf_counter() - started) * 1000, 3),
        "cache": "hit" if done.hit else "miss",
        "model": {"name": done.model.name, "version": manifest.version, "sha256": manifest.sha256},
        "result": None if referenced else done.result,
        "resultByReference": referenced,
        "resultBytes": len(document),
    }


# The archive PUT runs beside the store write: a new result costs the
# longer of the two, not their sum. A small pool: one PUT per request.
_archive_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-archive")


def store_and_archive(store: Store, settings: Settings, ref: ObjectRef, document: bytes, *, source: str) -> str | None:
    """Store ``document`` under ``ref`` and archive it to S3 at once; the S3 key, if archived.

    Both finish before this returns (an archive never outlives its request);
    the store's error wins if both fail, else the S3 error is raised, each
    in its documented shape. The PUT runs in a copy of this context, so the
    invocation's deadline bounds it too.
    """
    archive: Future[None] | None = None
    if settings.bucket:
        archive = _archive_pool.submit(
            contextvars.copy_context().run, s3.put_bytes, settings, settings.bucket, ref.key, document
        )
    try:
        store.put_bytes(ref, document, source=source)
    finally:
        if archive is not None:
            wait([archive])
    if archive is None:
        return None
    archive.result()
    return ref.key
