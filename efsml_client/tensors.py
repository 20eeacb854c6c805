"""numpy arrays to and from the Open Inference Protocol's tensors (docs/protocol.md).

Binary where it helps: fixed-size datatypes go as raw little-endian bytes
(Triton's binary tensor data extension), strings (``BYTES``) as JSON text.
The client keeps its own small table of datatypes rather than importing the
service's (``chalicelib.datatypes``): it must install and run without the
service's code.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The request/response header naming the JSON header's length in a binary body.
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY = "application/octet-stream"

#: Protocol datatype -> numpy dtype (little-endian), for the fixed-size ones.
NUMPY_OF: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_DATATYPE_OF = {np.dtype(v).kind + str(np.dtype(v).itemsize): k for k, v in NUMPY_OF.items()}
_LENGTH = struct.Struct("<I")


def datatype_of(array: np.ndarray) -> str:
    """The protocol's datatype for ``array``'s dtype (``BYTES`` for strings)."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _DATATYPE_OF[array.dtype.kind + str(array.dtype.itemsize)]
    except KeyError:
        raise ValueError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype") from None


@dataclass
class InferRequest:
    """An infer request body, ready to send: ``body`` and its ``headers``."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def encode_request(
    inputs: dict[str, np.ndarray], outputs: list[str] | None = None, request_id: str | None = None
) -> InferRequest:
    """An infer request for ``inputs``: binary for numbers, JSON for strings; outputs asked as binary."""
    header: dict[str, Any] = {"inputs": [], "parameters": {"binary_data_output": True}}
    if request_id is not None:
        header["id"] = request_id
    if outputs:
        header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
    chunks: list[bytes] = []
    for name, array in inputs.items():
        datatype = datatype_of(array)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if datatype == "BYTES":
            tensor["data"] = [str(v.decode() if isinstance(v, bytes) else v) for v in array.reshape(-1).tolist()]
        else:
            raw = np.ascontiguousarray(array, dtype=NUMPY_OF[datatype]).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        header["inputs"].append(tensor)
    text = json.dumps(header, separators=(",", ":")).encode()
    if not chunks:
        return InferRequest(text, {"Content-Type": "application/json"})
    return InferRequest(
        text + b"".join(chunks),
        # Accept: API Gateway returns a binary body only when the request accepts one.
        {"Content-Type": BINARY, "Accept": BINARY, HEADER_LENGTH: str(len(text))},
    )


def decode_response(body: bytes, header_length: str | None) -> dict[str, Any]:
    """An infer response (JSON or binary) as its JSON, each output's ``data`` a numpy array."""
    length = int(header_length) if header_length else len(body)
    doc: dict[str, Any] = json.loads(body[:length])
    offset = length
    for output in doc.get("outputs", []):
        shape = [int(d) for d in output.get("shape", [])]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            data = output.get("data", [])
            dtype = NUMPY_OF.get(output.get("datatype", ""), "object")
            # JSON writes non-finite floats as null (JSON has no NaN).
            values = [float("nan") if v is None else v for v in np.asarray(data, dtype=object).reshape(-1)]
            output["data"] = np.asarray(values, dtype=dtype).reshape(shape)
            continue
        raw = body[offset : offset + int(size)]
        offset += int(size)
        if output["datatype"] == "BYTES":
            output["data"] = _strings(raw).reshape(shape)
        else:
            output["data"] = np.frombuffer(raw, dtype=NUMPY_OF[output["datatype"]]).reshape(shape)
        output["parameters"].pop("binary_data_size")
        if not output["parameters"]:
            del output["parameters"]
    return doc


def _strings(raw: bytes) -> np.ndarray:
    values: list[str] = []
    at = 0
    while at < len(raw):
        (n,) = _LENGTH.unpack_from(raw, at)
        values.append(raw[at + 4 : at + 4 + n].decode())
        at += 4 + n
    return np.array(values, dtype=object)


def as_json(doc: dict[str, Any]) -> dict[str, Any]:
    """A decoded response with each output's ``data`` back as (nested) lists, for printing;
    JSON-text outputs (``content_type: application/json``) as the values they hold."""
    outputs = []
    for output in doc.get("outputs", []):
        data = _plain(output["data"])
        if (output.get("parameters") or {}).get("content_type") == "application/json":
            # A sequence or map output (ZipMap's class -> probability): one JSON text per element.
            data = _parsed(data)
        outputs.append({**output, "data": data})
    return {**doc, "outputs": outputs}


def _parsed(data: Any) -> Any:
    if isinstance(data, list):
        return [_parsed(v) for v in data]
    return json.loads(data) if isinstance(data, str) else data


def _plain(data: Any) -> Any:
    """Nested lists; a non-finite float is ``null``, as the service writes it."""
    if isinstance(data, np.ndarray):
        return _plain(data.tolist())
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
