"""Triton's binary tensor data extension: a JSON header, then raw tensor bytes.

A request (or response) body is ``<JSON header><tensor bytes>...``; the
``Inference-Header-Content-Length`` header gives the JSON header's length
and each tensor's ``parameters.binary_data_size`` its bytes, in the order
the tensors appear in the header. Fixed-size datatypes are their elements,
little-endian, row-major; BYTES is each element as a 4-byte little-endian
length then its bytes.

Decoding makes no copy: a fixed-size tensor is ``np.frombuffer`` over the
request body itself (read-only, which onnxruntime accepts as a feed).
"""

from __future__ import annotations

import struct
from typing import Any

from chalicelib.codecs.spec import TensorSpec, datatype_of, element_count, parse_shape, too_large
from chalicelib.datatypes import Datatype
from chalicelib.errors import InvalidRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
#: The content type of a binary body: one of Chalice's (and so API Gateway's) binary media types.
CONTENT_TYPE = "application/octet-stream"
_LENGTH = struct.Struct("<I")


def split(body: bytes, header_length: Any) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary rest of ``body``, as views (no copy)."""
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    try:
        length = int(str(header_length).strip())
    except ValueError:
        length = -1
    if not 0 < length <= len(view):
        raise InvalidRequest(
            f"{HEADER_LENGTH} must be the JSON header's length in bytes, between 1 and the body's {len(view)}"
        )
    return view[:length], view[length:]


def decode(name: str, datatype_name: Any, shape: Any, raw: memoryview, budget: int, limit: int) -> Any:
    """One tensor's raw bytes as a numpy array of its datatype and shape."""
    import numpy as np

    datatype = datatype_of(name, datatype_name)
    dims = parse_shape(name, shape)
    count = element_count(dims)
    if count > budget:
        raise too_large(TensorSpec(name, datatype.onnx, datatype.numpy, dims), budget, limit)
    if datatype.oip == "BYTES":
        return _decode_strings(name, raw, count).reshape(dims)
    if len(raw) != count * datatype.itemsize:
        raise InvalidRequest(
            f"Input '{name}' has binary_data_size {len(raw)}, but {datatype.oip} shape {list(dims)} "
            f"takes {count * datatype.itemsize} bytes"
        )
    array = np.frombuffer(raw, dtype=np.dtype(datatype.numpy).newbyteorder("<"), count=count)
    if datatype.oip == "BOOL" and count and int(np.frombuffer(raw, dtype=np.uint8).max()) > 1:
        raise InvalidRequest(f"Input '{name}' is BOOL: every byte must be 0 or 1")
    return array.reshape(dims)


def _decode_strings(name: str, raw: memoryview, count: int) -> Any:
    import numpy as np

    out = np.empty(count, dtype=object)
    offset, end = 0, len(raw)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidRequest(f"Input '{name}' (BYTES) ends before its element {i}'s 4-byte length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > end:
            raise InvalidRequest(f"Input '{name}' (BYTES) element {i} runs past its binary_data_size")
        try:
            # onnxruntime's string tensors are text.
            out[i] = str(raw[offset : offset + size], "utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"Input '{name}' (BYTES) element {i} is not UTF-8 text") from None
        offset += size
    if offset != end:
        raise InvalidRequest(f"Input '{name}' (BYTES) has {end - offset} bytes past its {count} elements")
    return out


def encode(array: Any, datatype: Datatype) -> bytes | memoryview:
    """One output tensor's raw bytes (a view of the array where it is already
    little-endian and contiguous)."""
    import numpy as np

    if datatype.oip == "BYTES":
        parts = []
        for value in array.flat:
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    little = np.ascontiguousarray(array, dtype=np.dtype(datatype.numpy).newbyteorder("<"))
    return memoryview(little).cast("B")
