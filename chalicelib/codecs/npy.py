"""Stored ``.npy`` inputs: the header is checked before the body is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.codecs.spec import TensorSpec, too_large
from chalicelib.errors import InvalidRequest
from chalicelib.runners import InputFile
from chalicelib.scrub import scrub

# numpy's own cap on .npy header length (format.py), plus magic and length fields.
_NPY_HEAD = 10_000 + 12
_NPY_KINDS = "biufU"


@dataclass
class BytesInput:
    """An in-memory input file (tests, and callers that already hold the bytes)."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def head(self, n: int) -> bytes:
        return self.data[:n]

    def read(self) -> bytes:
        return self.data


class NpyArray:
    """An .npy input, decoded only when its spec and element budget are known."""

    def __init__(self, source: InputFile) -> None:
        self.source = source

    def array(self, spec: TensorSpec, budget: int, limit: int) -> Any:
        """The array, after its header passed every check (else InvalidRequest);
        a view of the file's bytes, not a copy."""
        import io

        import numpy as np

        stream = io.BytesIO(self.source.head(_NPY_HEAD))
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, TypeError, ...
            raise InvalidRequest(f"The .npy input is not a valid NumPy array file ({scrub(str(exc))})") from None
        if (
            not isinstance(shape, tuple)
            or not all(type(d) is int and d >= 0 for d in shape)
            or not isinstance(fortran, bool)
            or len(shape) > 32
        ):
            raise InvalidRequest(
                "The .npy input has an invalid header: shape must be a tuple of at most 32 "
                "non-negative integers and fortran_order a boolean"
            )
        if dtype.hasobject:
            raise InvalidRequest("The .npy input holds Python objects; only numeric and string arrays are accepted")
        if dtype.kind not in _NPY_KINDS or dtype.subdtype is not None or dtype.names is not None or dtype.itemsize == 0:
            raise InvalidRequest(
                f"The .npy input has dtype {str(dtype)[:40]!r}; only booleans, numbers and strings are accepted"
            )
        count = 1
        for dim in shape:
            count *= dim  # Python ints: no overflow
        if count > budget:
            raise too_large(spec, budget, limit)
        offset = stream.tell()
        if self.source.size - offset != count * dtype.itemsize:
            raise InvalidRequest(
                f"The .npy input is truncated or padded: its header announces shape {list(shape)} {dtype}"
            )
        data = self.source.read()
        if len(data) != offset + count * dtype.itemsize:
            raise InvalidRequest("The .npy input changed while it was read")
        try:
            flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            return flat.reshape(shape, order="F" if fortran else "C")
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"The .npy input is not a valid NumPy array file ({scrub(str(exc))})") from None
