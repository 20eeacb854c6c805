"""An ONNX model's signature, read from its protobuf wire format.

What onnxruntime's ``get_inputs()`` / ``get_outputs()`` would say, and the
opset imports, without onnxruntime or the ``onnx`` package: a bounded walk
(the primitives of :mod:`onnx_scan`) over ``ModelProto.ir_version`` and
``opset_import``, and ``graph.input`` / ``graph.output`` / the names of
``graph.initializer`` and ``graph.sparse_initializer``. Nodes and weights
are skipped by length, never copied, so the cost is that of the graph's
headers, not its size.

Like onnxruntime, a graph input that is also an initializer is not an input
a client must feed (it is a default the caller may override) and is left
out. Types are spelled as onnxruntime spells them (``tensor(float)``,
``seq(map(int64,tensor(float)))``, ``optional(tensor(int64))``,
``sparse_tensor(float)``); shapes use -1 for a symbolic or unknown dimension.
"""

from __future__ import annotations

from collections.abc import Buffer

from chalicelib.datatypes import BY_ONNX_ELEM
from chalicelib.runners.onnx_scan import _LEN, _VARINT, FieldBudget, ScanError, fields
from chalicelib.signature import ONNX_PLATFORM, Signature, TensorInfo

# ONNX TensorProto.DataType names as onnxruntime prints them, for element
# types without an OIP datatype (the table in ``datatypes`` has the rest).
_ELEM_NAMES = {
    0: "undefined",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4e2m1",
    24: "float8e8m0",
    25: "uint2",
    26: "int2",
}
MAX_TYPE_DEPTH = 32
"""Deepest nesting of sequence/map/optional types described; real models nest two or three."""


def _text(buf: memoryview, start: int, stop: int) -> str:
    return bytes(buf[start:stop]).decode("utf-8", errors="replace")


def _signed(value: int) -> int:
    """A varint read as protobuf's int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _elem_name(elem: int) -> str:
    known = BY_ONNX_ELEM.get(elem)
    if known is not None:
        return known.onnx[len("tensor(") : -1]
    return _ELEM_NAMES.get(elem, f"unknown({elem})")


def _shape(buf: memoryview, start: int, stop: int, budget: FieldBudget) -> tuple[int, ...]:
    """TensorShapeProto: dim=1 (Dimension: dim_value=1, dim_param=2)."""
    dims = []
    for number, wire, _, a, b in fields(buf, start, stop, budget):
        if number == 1 and wire == _LEN:
            value = -1
            for n, w, _, v, _ in fields(buf, a, b, budget):
                if n == 1 and w == _VARINT:
                    value = _signed(v)
                elif n == 2:
                    value = -1
            dims.append(value if value >= 0 else -1)
    return tuple(dims)


def _type(
    buf: memoryview, start: int, stop: int, budget: FieldBudget, depth: int = 0
) -> tuple[str, int | None, tuple[int, ...] | None]:
    """TypeProto -> (onnxruntime's type string, tensor elem type, shape).

    The elem type and shape are those of a plain tensor; ``None`` otherwise
    (or, for the shape, when the tensor's rank is unknown)."""
    if depth > MAX_TYPE_DEPTH:
        raise ScanError(f"nests types deeper than {MAX_TYPE_DEPTH} levels")
    for number, wire, _, a, b in fields(buf, start, stop, budget):
        if wire != _LEN:
            continue
        if number in (1, 8):  # tensor_type, sparse_tensor_type: elem_type=1, shape=2
            elem, shape = 0, None
            for n, w, _, v, e in fields(buf, a, b, budget):
                if n == 1 and w == _VARINT:
                    elem = v
                elif n == 2 and w == _LEN:
                    shape = _shape(buf, v, e, budget)
            if number == 8:
                return f"sparse_tensor({_elem_name(elem)})", None, None
            return f"tensor({_elem_name(elem)})", elem, shape
        if number in (4, 9):  # sequence_type, optional_type: elem_type=1
            inner = "undefined"
            for n, w, _, v, e in fields(buf, a, b, budget):
                if n == 1 and w == _LEN:
                    inner = _type(buf, v, e, budget, depth + 1)[0]
            return f"{'seq' if number == 4 else 'optional'}({inner})", None, None
        if number == 5:  # map_type: key_type=1, value_type=2
            key, value = 0, "undefined"
            for n, w, _, v, e in fields(buf, a, b, budget):
                if n == 1 and w == _VARINT:
                    key = v
                elif n == 2 and w == _LEN:
                    value = _type(buf, v, e, budget, depth + 1)[0]
            return f"map({_elem_name(key)},{value})", None, None
    return "undefined", None, None


def _value_info(buf: memoryview, start: int, stop: int, budget: FieldBudget) -> TensorInfo:
    """ValueInfoProto: name=1, type=2."""
    name, onnx_type, elem, shape = "", "undefined", None, None
    for number, wire, _, a, b in fields(buf, start, stop, budget):
        if wire != _LEN:
            continue
        if number == 1:
            name = _text(buf, a, b)
        elif number == 2:
            onnx_type, elem, shape = _type(buf, a, b, budget)
    datatype = BY_ONNX_ELEM[elem].oip if elem in BY_ONNX_ELEM else None
    return TensorInfo(name=name, datatype=datatype, shape=shape, onnx_type=onnx_type)


def _tensor_name(buf: memoryview, start: int, stop: int, budget: FieldBudget) -> str | None:
    """TensorProto.name (field 8); every other field, raw_data included, skipped by length."""
    for number, wire, _, a, b in fields(buf, start, stop, budget):
        if number == 8 and wire == _LEN:
            return _text(buf, a, b)
    return None


def read_signature(data: Buffer) -> tuple[int, Signature]:
    """``(ir_version, signature)`` of the ModelProto in ``data``; :class:`ScanError`
    if it is not one (no graph, truncated, not protobuf). ``data`` is read in
    place (``bytes``, ``mmap``, ``memoryview``) and the view released on return."""
    with memoryview(data) as buf:
        return _read(buf)


def _read(buf: memoryview) -> tuple[int, Signature]:
    budget = FieldBudget()
    ir_version = 0
    graph: tuple[int, int] | None = None
    opsets: dict[str, int] = {}
    for number, wire, _, a, b in fields(buf, 0, len(buf), budget):
        if number == 1 and wire == _VARINT:
            ir_version = a
        elif number == 7 and wire == _LEN:
            graph = (a, b)
        elif number == 8 and wire == _LEN:  # OperatorSetIdProto: domain=1, version=2
            domain, version = "", 0
            for n, w, _, v, e in fields(buf, a, b, budget):
                if n == 1 and w == _LEN:
                    domain = _text(buf, v, e)
                elif n == 2 and w == _VARINT:
                    version = _signed(v)
            # "ai.onnx" is the default domain's other spelling.
            opsets["" if domain == "ai.onnx" else domain] = version
    if graph is None:
        raise ScanError("has no graph (not an ONNX model)")
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    initializers: set[str] = set()
    for number, wire, _, a, b in fields(buf, graph[0], graph[1], budget):
        if wire != _LEN:
            continue
        if number == 11:
            inputs.append(_value_info(buf, a, b, budget))
        elif number == 12:
            outputs.append(_value_info(buf, a, b, budget))
        elif number == 5:
            name = _tensor_name(buf, a, b, budget)
            if name is not None:
                initializers.add(name)
        elif number == 15:  # SparseTensorProto: values=1 (a TensorProto, which holds the name)
            for n, w, _, v, e in fields(buf, a, b, budget):
                if n == 1 and w == _LEN:
                    name = _tensor_name(buf, v, e, budget)
                    if name is not None:
                        initializers.add(name)
    signature = Signature(
        platform=ONNX_PLATFORM,
        inputs=tuple(i for i in inputs if i.name not in initializers),
        outputs=tuple(outputs),
        opsets=opsets,
    )
    return ir_version, signature
