"""The locale a model's ``StringNormalizer`` asks for, when this machine lacks it.

onnxruntime's ``StringNormalizer`` builds a C++ locale when its session is
created: the node's ``locale`` attribute, or ``en_US.UTF-8`` when it has
none, which is what skl2onnx writes for every ``CountVectorizer`` and
``TfidfVectorizer``. Lambda's runtime has only ``C.UTF-8``, so such a model
fails to load there. :func:`nearest` picks the closest locale that exists
here (the same name spelt another way, the same language in UTF-8, then
``C.UTF-8``: never a non-UTF-8 fallback, which would change how non-ASCII
text is lowercased), and :func:`with_locale` gives the model's bytes with
every ``StringNormalizer`` set to it, for the session to be created again.

A walk of the protobuf wire format (no ``onnx`` package): only the messages
on the way to a ``StringNormalizer`` are re-encoded; every other field is
copied as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
from collections.abc import Buffer, Callable
from functools import lru_cache

from chalicelib.runners.onnx_scan import FieldBudget, ScanError, fields

DEFAULT_LOCALE = "en_US.UTF-8"
"""onnxruntime's locale for a ``StringNormalizer`` without a ``locale`` attribute (on Linux)."""

_FAILURE = re.compile(r"Failed to construct locale with name:\s*([^:\s]*)")
_LEN = 2
_OP_TYPE = b"StringNormalizer"
# Field numbers (onnx.proto3).
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODES = 1
_FUNCTION_NODES = 7
_NODE_OP_TYPE, _NODE_ATTRIBUTES = 4, 5
_ATTR_NAME, _ATTR_G, _ATTR_GRAPHS, _ATTR_TYPE = 1, 6, 11, 20
_ATTR_STRING = 3  # AttributeProto.STRING
_ATTR_S = 4
_MAX_DEPTH = 64
_LC_ALL_MASK = 8127  # glibc: every category but LC_ALL (6), categories 0-12


def missing_locale(error: str) -> str | None:
    """The locale an onnxruntime session-creation error says it could not build, else ``None``."""
    match = _FAILURE.search(error)
    return match.group(1) if match else None


@lru_cache(maxsize=64)
def exists(name: str) -> bool:
    """Whether this machine's C library can build the locale ``name`` (as the C++ runtime would)."""
    libc = _libc()
    if libc is None or not name:
        return False
    handle = libc.newlocale(_LC_ALL_MASK, name.encode(), None)
    if not handle:
        return False
    libc.freelocale(handle)
    return True


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    libc = ctypes.CDLL(path)
    libc.newlocale.restype = ctypes.c_void_p
    libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
    libc.freelocale.argtypes = [ctypes.c_void_p]
    return libc


def nearest(name: str, has: Callable[[str], bool] = exists) -> str | None:
    """The locale nearest to ``name`` that exists here (``has``), in UTF-8; ``None`` if there is none."""
    language, _, rest = name.partition(".")
    modifier = ("@" + rest.partition("@")[2]) if "@" in rest else ""
    base = language.partition("_")[0]
    candidates = [
        name,
        f"{language}.UTF-8{modifier}",
        f"{language}.utf8{modifier}",
        f"{base}.UTF-8",
        f"{base}.utf8",
        "C.UTF-8",
        "C.utf8",
    ]
    return next((c for c in candidates if c and has(c)), None)


def with_locale(data: Buffer, locale: str) -> bytes:
    """The model ``data`` with every ``StringNormalizer`` (in the graph, its
    subgraphs and the model's functions) given the locale ``locale``."""
    with memoryview(data) as view:
        buf = view.cast("B") if view.format != "B" else view
        return _model(buf, _Walk(locale))


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


class _Walk:
    """One rewrite: the locale to set, and the fields it may read (as the scan's)."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.budget = FieldBudget()


_Rewriter = Callable[[memoryview, int, int, _Walk, int], bytes]


def _rewrite(buf: memoryview, start: int, end: int, replace: dict[int, _Rewriter], walk: _Walk, depth: int) -> bytes:
    """The message buf[start:end] with each length-delimited field whose number
    is in ``replace`` re-encoded by its rewriter, every other field copied."""
    if depth > _MAX_DEPTH:
        raise ScanError(f"nests more than {_MAX_DEPTH} messages")
    parts: list[bytes | memoryview] = []
    for number, wire, field_start, a, b in fields(buf, start, end, walk.budget):
        rewriter = replace.get(number) if wire == _LEN else None
        if rewriter is None:
            parts.append(buf[field_start:b])
        else:
            parts.append(_len_field(number, rewriter(buf, a, b, walk, depth + 1)))
    return b"".join(parts)


def _model(buf: memoryview, walk: _Walk) -> bytes:
    return _rewrite(buf, 0, len(buf), {_MODEL_GRAPH: _graph, _MODEL_FUNCTIONS: _function}, walk, 0)


def _graph(buf: memoryview, a: int, b: int, walk: _Walk, depth: int) -> bytes:
    return _rewrite(buf, a, b, {_GRAPH_NODES: _node}, walk, depth)


def _function(buf: memoryview, a: int, b: int, walk: _Walk, depth: int) -> bytes:
    return _rewrite(buf, a, b, {_FUNCTION_NODES: _node}, walk, depth)


def _node(buf: memoryview, a: int, b: int, walk: _Walk, depth: int) -> bytes:
    op_type = next(
        (bytes(buf[x:y]) for n, w, _, x, y in fields(buf, a, b, walk.budget) if n == _NODE_OP_TYPE and w == _LEN), b""
    )
    if op_type != _OP_TYPE:
        # Other nodes may hold subgraphs (If, Loop, Scan) with normalizers inside.
        return _rewrite(buf, a, b, {_NODE_ATTRIBUTES: _subgraph_attribute}, walk, depth)
    kept: list[bytes | memoryview] = []
    for number, wire, field_start, x, y in fields(buf, a, b, walk.budget):
        if number == _NODE_ATTRIBUTES and wire == _LEN and _attribute_name(buf, x, y, walk.budget) == b"locale":
            continue  # replaced below
        kept.append(buf[field_start:y])
    attribute = (
        _len_field(_ATTR_NAME, b"locale")
        + _encode_varint(_ATTR_TYPE << 3)
        + _encode_varint(_ATTR_STRING)
        + _len_field(_ATTR_S, walk.locale.encode())
    )
    kept.append(_len_field(_NODE_ATTRIBUTES, attribute))
    return b"".join(kept)


def _attribute_name(buf: memoryview, a: int, b: int, budget: FieldBudget) -> bytes:
    return next((bytes(buf[x:y]) for n, w, _, x, y in fields(buf, a, b, budget) if n == _ATTR_NAME and w == _LEN), b"")


def _subgraph_attribute(buf: memoryview, a: int, b: int, walk: _Walk, depth: int) -> bytes:
    return _rewrite(buf, a, b, {_ATTR_G: _graph, _ATTR_GRAPHS: _graph}, walk, depth)
