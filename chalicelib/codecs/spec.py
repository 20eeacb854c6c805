"""A model's declared input or output, as the codecs check values against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.datatypes import BY_OIP, BY_ONNX, Datatype
from chalicelib.errors import InvalidRequest
from chalicelib.signature import TensorInfo


@dataclass(frozen=True)
class TensorSpec:
    """One declared input or output: its name, numpy dtype (or None) and shape."""

    name: str
    onnx_type: str
    dtype: str | None
    shape: tuple[int | str | None, ...] | None  # None: rank unknown

    @property
    def datatype(self) -> Datatype | None:
        """Its protocol datatype (None: not a tensor, or no OIP name)."""
        return BY_ONNX.get(self.onnx_type)

    def describe(self) -> str:
        """``'x' float32 [?, 16]``, for error messages."""
        dims = (
            "any shape"
            if self.shape is None
            else "[" + ", ".join(str(d) if d is not None else "?" for d in self.shape) + "]"
        )
        # Strings read as "str", as Python users know them (numpy keeps them as objects).
        shown = "str" if self.dtype == "object" else self.dtype
        return f"'{self.name}' {shown or self.onnx_type} {dims}"

    def info(self) -> TensorInfo:
        """Its entry in a :class:`~chalicelib.signature.Signature` (-1 for a dynamic dimension)."""
        datatype = self.datatype
        shape = None if self.shape is None else tuple(d if isinstance(d, int) and d >= 0 else -1 for d in self.shape)
        return TensorInfo(self.name, datatype.oip if datatype else None, shape, self.onnx_type)


def spec_of(arg: Any) -> TensorSpec:
    """The spec of an onnxruntime ``NodeArg`` (anything with ``.name``, ``.type``, ``.shape``)."""
    shape = arg.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) or d is None else str(d) for d in shape)
    datatype = BY_ONNX.get(arg.type)
    return TensorSpec(arg.name, arg.type, datatype.numpy if datatype else None, dims)


def too_large(spec: TensorSpec, budget: int, limit: int) -> InvalidRequest:
    """The error for inputs past MAX_TENSOR_ELEMENTS."""
    return InvalidRequest(
        f"Inputs are too large: at most {limit} elements per request (MAX_TENSOR_ELEMENTS); "
        f"input '{spec.name}' exceeds the {max(budget, 0)} left"
    )


def datatype_of(name: str, datatype_name: Any) -> Datatype:
    """The protocol datatype a request's tensor names, or InvalidRequest listing them."""
    datatype = BY_OIP.get(datatype_name) if isinstance(datatype_name, str) else None
    if datatype is None:
        raise InvalidRequest(
            f"Tensor '{name}' has datatype {str(datatype_name)[:20]!r}; the datatypes are {', '.join(BY_OIP)}"
        )
    return datatype


def parse_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A request's ``shape``: a list of at most 32 non-negative integers."""
    if not isinstance(shape, list) or len(shape) > 32 or not all(type(d) is int and 0 <= d < 2**40 for d in shape):
        raise InvalidRequest(f"Tensor '{name}' needs 'shape': a list of at most 32 non-negative integers")
    return tuple(shape)


def element_count(dims: tuple[int, ...]) -> int:
    """Elements in a tensor of shape ``dims`` (Python ints: no overflow)."""
    count = 1
    for d in dims:
        count *= d
    return count
