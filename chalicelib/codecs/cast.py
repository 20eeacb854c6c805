"""Casting an array to a declared dtype, and checking it against a declared shape.

Values are cast only within a kind that keeps their meaning: integers may
feed float inputs, integral floats may feed integer inputs (within range),
nothing else crosses kinds (strings never feed numbers, numbers never feed
booleans).
"""

from __future__ import annotations

from typing import Any, Callable

from chalicelib.codecs.spec import TensorSpec
from chalicelib.errors import InvalidRequest

# Source numpy kinds each target kind accepts ("O": strings, numpy keeps them as objects).
_ACCEPTS = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "O": "USO"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "booleans", "O": "strings"}


def cast(spec: TensorSpec, array: Any, signature: Callable[[], str]) -> Any:
    """``array`` as ``spec.dtype``, refusing casts that change meaning
    (InvalidRequest ending with ``signature()``)."""
    import numpy as np

    target = np.dtype(spec.dtype)
    kind = array.dtype.kind
    shown = "str" if target.kind == "O" else spec.dtype
    if target.kind == "O":
        if kind == "U":
            return array
        if kind == "S":
            return array.astype(object)
        if kind == "O" and all(isinstance(v, (str, bytes)) for v in array.flat):
            return np.asarray(array, order="C")
    if kind not in _ACCEPTS[target.kind] or kind == "O":
        found = "non-numeric or out-of-range values" if kind in "OSUV" else f"{array.dtype} values"
        raise InvalidRequest(
            f"Input '{spec.name}' must hold {_KIND_WORDS[target.kind]} ({shown}), got {found}; {signature()}"
        )
    if array.dtype == target:
        return np.asarray(array, order="C")  # ascontiguousarray would turn 0-d into 1-d
    if target.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (np.mod(array, 1) == 0)):
            raise InvalidRequest(
                f"Input '{spec.name}' must hold integers ({spec.dtype}), got fractional numbers; {signature()}"
            )
        info = np.iinfo(target)
        # Compared as floats, 2**64 - 1 would equal 2**64 (float64 rounds it):
        # a float source must stay below the exact power of two past the range.
        low, high = (float(info.min), float(info.max + 1)) if kind == "f" else (info.min, info.max + 1)
        if array.size and (array.min() < low or array.max() >= high):
            raise InvalidRequest(f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        converted = array.astype(target)
    if target.kind == "f" and kind == "f" and target.itemsize < array.dtype.itemsize:
        # float64 -> float32 turns values beyond the range into inf silently.
        if not np.array_equal(np.isfinite(converted), np.isfinite(array)):
            raise InvalidRequest(f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    return np.asarray(converted, order="C")


def check_shape(
    spec: TensorSpec, shape: tuple[int, ...], symbols: dict[str, tuple[int, str]], signature: Callable[[], str]
) -> None:
    """Refuse ``shape`` unless it fits ``spec.shape``; inputs sharing a
    symbolic dimension must agree on it (``symbols`` collects them)."""
    if spec.shape is None:
        return
    got = "[" + ", ".join(map(str, shape)) + "]"
    if len(shape) != len(spec.shape):
        raise InvalidRequest(f"Input '{spec.name}' has rank {len(shape)} (shape {got}); {signature()}")
    for axis, (want, have) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int) and want >= 0 and want != have:
            raise InvalidRequest(f"Input '{spec.name}' has shape {got}, dimension {axis} must be {want}; {signature()}")
        if isinstance(want, str) and want:
            seen = symbols.setdefault(want, (have, spec.name))
            if seen[0] != have:
                raise InvalidRequest(
                    f"Dimension '{want}' is {seen[0]} in input '{seen[1]}' but {have} in "
                    f"input '{spec.name}'; {signature()}"
                )
