"""Tensors as JSON: request bodies, nested lists <-> numpy, output documents.

Bodies on the protocol's paths are parsed and written with orjson (about 10x
``json`` on number arrays), and numeric arrays are serialised by orjson
straight from numpy's buffer. The seed's ``/predict`` documents are written
with sorted keys (:mod:`chalicelib.jsontext`), so a repeated request writes
the same bytes and stays an idempotent no-op.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from chalicelib.codecs.cast import cast
from chalicelib.codecs.spec import TensorSpec, datatype_of, element_count, parse_shape, too_large
from chalicelib.errors import InvalidRequest
from chalicelib.runners import InputFile


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON fast (orjson); ValueError on malformed input (RFC 8259: no NaN literals)."""
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def dumps(value: Any) -> bytes:
    """Serialise JSON fast: numpy arrays and scalars directly (non-finite floats become null)."""
    import orjson

    data: bytes = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    return data


def nested_array(spec: TensorSpec, value: Any, budget: int, limit: int, signature: Callable[[], str]) -> Any:
    """A nested list (or bare number) as a numpy array, before any cast; InvalidRequest
    if it is not rectangular or holds more than ``budget`` elements."""
    import numpy as np

    if isinstance(value, (dict, bytes)) or value is None:
        raise InvalidRequest(f"Input '{spec.name}' must be a nested list of values; {signature()}")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        # numpy >= 1.24 refuses ragged nesting outright.
        raise InvalidRequest(
            f"Input '{spec.name}' is not a rectangular array (ragged or mixed nesting); {signature()}"
        ) from None
    if array.size > budget:
        raise too_large(spec, budget, limit)
    return array


def input_object(source: InputFile, limit: int, signature: Callable[[], str]) -> dict[str, Any]:
    """A stored ``.json`` input: the object mapping input names to nested lists."""
    # Same shape and the same size limit as an inline body: JSON
    # numbers cost ~10x their binary size to parse; big tensors go in .npy.
    if source.size > limit:
        raise InvalidRequest(f"Input file '{source.name}' is larger than {limit} bytes; store large tensors as .npy")
    try:
        parsed = json.loads(source.read())
    except (ValueError, RecursionError):
        raise InvalidRequest(f"Input file '{source.name}' is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            f"Input file '{source.name}' must hold a JSON object mapping input names to arrays; {signature()}"
        )
    return parsed


def tensor_json(value: Any) -> dict[str, Any]:
    """One output in the seed's ``/predict`` shape: ``{data, shape, dtype}``."""
    import numpy as np

    if isinstance(value, np.ndarray):
        out = {"data": value.tolist(), "shape": list(value.shape), "dtype": str(value.dtype)}
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            # JSON has no NaN/Infinity (strict parsers reject Python's
            # spelling): such values are null, with their positions flagged.
            # numpy's stubs lack None as a fill value (it gives an object array).
            out["data"] = np.where(np.isfinite(value), value, None).tolist()  # type: ignore[call-overload]
            out["nonFinite"] = True
        return out
    # Sequence or map outputs (e.g. classifier probabilities): plain JSON.
    return {"data": plain(value), "shape": None, "dtype": type(value).__name__}


def plain(value: Any) -> Any:
    """``value`` with every numpy array and scalar turned into plain Python."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def oip_array(name: str, datatype_name: Any, shape: Any, data: Any, budget: int, limit: int) -> Any:
    """A protocol JSON tensor (``datatype``, ``shape``, flat or nested ``data``)
    as a numpy array of that datatype and shape, cast without changing meaning."""
    import numpy as np

    datatype = datatype_of(name, datatype_name)
    dims = parse_shape(name, shape)
    spec = TensorSpec(name, datatype.onnx, datatype.numpy, dims)
    count = element_count(dims)
    if count > budget:
        raise too_large(spec, budget, limit)
    if not isinstance(data, list):
        raise InvalidRequest(f"Input '{name}' needs 'data' (a list of values) or parameters.binary_data_size")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidRequest(f"Input '{name}' data is not a rectangular array (ragged or mixed nesting)") from None
    if array.dtype.kind == "f" and datatype.numpy[:3] in ("int", "uin"):
        array = _exact_integers(name, data, datatype.numpy, array)
    if array.size != count:
        raise InvalidRequest(f"Input '{name}' has {array.size} values in 'data' but shape {list(dims)} holds {count}")
    return cast(spec, array, lambda: f"its datatype is {datatype.oip}").reshape(dims)


def _exact_integers(name: str, data: list[Any], numpy_name: str, inferred: Any) -> Any:
    """Integers beyond 2**53 that numpy inferred as float64 (losing their low
    bits), read again exactly; ``inferred`` as it was if any value is not an integer."""
    import numpy as np

    values = np.array(data, dtype=object).reshape(-1)
    if not all(type(v) is int for v in values):
        return inferred  # genuine floats: the cast checks them
    try:
        return np.array(values.tolist(), dtype=numpy_name).reshape(inferred.shape)
    except OverflowError:
        raise InvalidRequest(f"Input '{name}' has values outside the {numpy_name} range") from None
