"""A bounded scan of an ONNX file's protobuf wire format, before any runtime sees it.

Why hand-rolled rather than ``onnx`` or a generated descriptor: ``onnx`` is
not in the Lambda bundle, and a full protobuf parse copies every weight
(twice the model in memory) just to look at a few flags. This walker reads
only the handful of fields that can hold a tensor or a subgraph, skips every
other field (weights included) without copying, and is bounded: nesting
depth, number of fields visited, and every length checked against the
buffer. Unknown fields are skipped, so a newer ``onnx.proto`` only matters
if it adds a new place for tensors (the field map below is where to add it).

What it refuses: any tensor whose data lives outside the file
(``data_location = EXTERNAL`` or ``external_data`` entries), wherever it
sits - graph initializers, sparse initializers, node attributes of any
tensor type (``Constant``'s ``value``/``sparse_value`` included), subgraphs
of ``If``/``Loop``/``Scan`` at any depth, model-local functions, and
training-info graphs.
"""

from __future__ import annotations

from collections.abc import Buffer, Iterator
from dataclasses import dataclass

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

# Message kinds and, per kind, which length-delimited fields hold which kind.
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING = range(8)
_CHILDREN: dict[int, dict[int, int]] = {
    # ModelProto: graph=7, training_info=20, functions=25
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    # GraphProto: node=1, initializer=5, sparse_initializer=15
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    # NodeProto: attribute=5
    _NODE: {5: _ATTR},
    # AttributeProto: t=5, g=6, tensors=10, graphs=11, sparse_tensor=22, sparse_tensors=23
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    # SparseTensorProto: values=1, indices=2
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    # FunctionProto: node=7, attribute_proto=11
    _FUNCTION: {7: _NODE, 11: _ATTR},
    # TrainingInfoProto: initialization=1, algorithm=2
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _TENSOR: {},
}
# TensorProto: external_data=13 (repeated entries), data_location=14 (EXTERNAL=1)
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 13, 14, 1

MAX_DEPTH = 64
"""Deepest message nesting walked at all (a structural bound: each If/Loop
level is three messages: graph, node, attribute); the model's nesting
limit (:class:`ScanLimits`) is checked first and refuses with a 400."""
MAX_FIELDS = 5_000_000
"""Most fields visited; a graph of 100k nodes has well under a million."""

# NodeProto: op_type=4, domain=7, overload=8. FunctionProto: name=1,
# domain=10, overload=13. TensorProto: dims=1, data_type=2.
# SparseTensorProto: dims=3.
_NODE_KEY = {4: 1, 7: 0, 8: 2}  # field -> slot in (domain, op_type, overload)
_FUNCTION_KEY = {10: 0, 1: 1, 13: 2}
_DIMS, _DATA_TYPE, _SPARSE_DIMS, _SPARSE_VALUES = 1, 2, 3, 1
# Bytes per element by TensorProto.DataType (STRING: one std::string each).
_ELEMENT_BYTES = {
    1: 4,
    2: 1,
    3: 1,
    4: 2,
    5: 2,
    6: 4,
    7: 8,
    8: 32,
    9: 1,
    10: 2,
    11: 8,
    12: 4,
    13: 8,
    14: 8,
    15: 16,
    16: 2,
}
_DEFAULT_ELEMENT_BYTES = 8
_VALUES = -2  # placeholder for a sparse tensor's dense element count
_COUNT_CAP = 1 << 62  # counts saturate here: no bignum arithmetic on hostile dims


class ScanError(ValueError):
    """The file is not a well-formed ONNX model, or is too deeply nested or too large to scan."""


class ExternalData(ValueError):
    """A tensor in the model names data outside the file."""


class LimitExceeded(ValueError):
    """The model is well-formed but over a load-time limit; the message names it."""


@dataclass(frozen=True)
class ScanLimits:
    """What a model may need once onnxruntime has loaded it (0: no limit)."""

    max_nodes: int = 0
    """Nodes with model-local functions inlined (MAX_MODEL_NODES)."""
    max_nesting: int = 0
    """Subgraph plus function-call levels (MAX_MODEL_NESTING)."""
    max_tensor_bytes: int = 0
    """Dense bytes of every tensor the model declares, sparse ones densified
    and function bodies counted once per inlined call (MAX_MODEL_BYTES)."""


SCAN_VERSION = 1
"""The scanner's rules: a :class:`ScanReport` recorded by another version
(``ScanReport.from_json``) is not trusted. Bump it whenever what the scan
refuses or counts changes (a new place for tensors in the field map, a new
count)."""


@dataclass(frozen=True)
class ScanReport:
    """What the scan saw: counts, for logs and limits.

    Ingest records it in the model's manifest (:meth:`to_json`), beside the
    sha256 of the very bytes it walked; a load of those bytes under limits
    the report is :meth:`within` need not walk them again."""

    tensors: int
    graphs: int
    nodes: int
    inlined_nodes: int = 0
    nesting: int = 0
    tensor_bytes: int = 0

    def to_json(self) -> dict[str, int]:
        """The report as the manifest's ``scan`` field, stamped with :data:`SCAN_VERSION`."""
        return {
            "version": SCAN_VERSION,
            "tensors": self.tensors,
            "graphs": self.graphs,
            "nodes": self.nodes,
            "inlinedNodes": self.inlined_nodes,
            "nesting": self.nesting,
            "tensorBytes": self.tensor_bytes,
        }

    @classmethod
    def from_json(cls, doc: object) -> ScanReport | None:
        """A recorded report, or ``None`` when there is none, it is malformed,
        or another scanner version wrote it (then the load scans)."""
        if not isinstance(doc, dict) or doc.get("version") != SCAN_VERSION:
            return None
        keys = ("tensors", "graphs", "nodes", "inlinedNodes", "nesting", "tensorBytes")
        values = [doc.get(k) for k in keys]
        if not all(type(v) is int and 0 <= v < _COUNT_CAP for v in values):
            return None
        return cls(*values)  # type: ignore[arg-type]

    def within(self, limits: ScanLimits) -> bool:
        """Whether a scan of the same bytes under ``limits`` would pass: every
        count at or under its limit. Conservative: the walk also checks the
        main graph's own nodes, which never exceed ``nodes`` (every node seen)."""
        return (
            (not limits.max_nodes or max(self.nodes, self.inlined_nodes) <= limits.max_nodes)
            and (not limits.max_nesting or self.nesting <= limits.max_nesting)
            and (not limits.max_tensor_bytes or self.tensor_bytes <= limits.max_tensor_bytes)
        )


class _Owner:
    """The main graph or one model-local function: what inlining it costs."""

    __slots__ = ("nodes", "tensor_bytes", "level", "calls")

    def __init__(self) -> None:
        self.nodes = 0
        self.tensor_bytes = 0
        self.level = 0  # deepest subgraph level of its own nodes
        self.calls: dict[tuple[bytes, bytes, bytes], list[int]] = {}  # op key -> [count, deepest level]


def scan(data: Buffer, limits: ScanLimits | None = None) -> ScanReport:
    """Walk ``data`` as a ModelProto; raise :class:`ExternalData`,
    :class:`LimitExceeded` (over ``limits``) or :class:`ScanError`.

    ``data`` is any buffer (``bytes``, ``mmap``, ``memoryview``): it is read in
    place, never copied, and the view taken of it is released on return, so a
    mapping can be closed right after."""
    with memoryview(data) as buf:
        return _scan(buf, limits or ScanLimits())


def _scan(buf: memoryview, limits: ScanLimits) -> ScanReport:
    counts = {_TENSOR: 0, _GRAPH: 0, _NODE: 0}
    budget = FieldBudget()
    main = _Owner()
    owners = [main]
    functions: dict[tuple[bytes, bytes, bytes], int] = {}
    max_nesting = limits.max_nesting or 1 << 30
    max_depth = max(MAX_DEPTH, 3 * (limits.max_nesting + 2))
    # Explicit stack of (kind, start, end, depth, owner, level, dense): no
    # recursion, bounded depth. ``level`` counts subgraphs within the owner;
    # ``dense`` is a sparse tensor's dense element count, for its values.
    stack: list[tuple[int, int, int, int, int, int, int]] = [(_MODEL, 0, len(buf), 0, 0, 0, -1)]
    while stack:
        kind, pos, end, depth, owner_id, level, dense = stack.pop()
        owner = owners[owner_id]
        if kind in counts:
            counts[kind] += 1
        children = _CHILDREN[kind]
        key = [b"", b"", b""]
        dims: list[int] = []
        data_type = 0
        pending: list[tuple[int, int, int, int, int, int, int]] = []
        if kind == _FUNCTION:
            owner_id, level = len(owners), 0
            owners.append(_Owner())
            owner = owners[owner_id]
        for number, wire, _, a, stop in fields(buf, pos, end, budget):
            if wire == _VARINT:
                if kind == _TENSOR:
                    if number == _DATA_LOCATION and a == _EXTERNAL:
                        raise ExternalData()
                    if number == _DATA_TYPE:
                        data_type = a
                    elif number == _DIMS:
                        _append_dim(dims, a)
                elif kind == _SPARSE and number == _SPARSE_DIMS:
                    _append_dim(dims, a)
            elif wire == _LEN:
                if kind == _TENSOR:
                    if number == _EXTERNAL_DATA:
                        raise ExternalData()
                    if number == _DIMS:
                        dims.extend(_packed(buf, a, stop))
                elif kind == _SPARSE and number == _SPARSE_DIMS:
                    dims.extend(_packed(buf, a, stop))
                elif kind == _NODE and number in _NODE_KEY:
                    key[_NODE_KEY[number]] = bytes(buf[a:stop])
                elif kind == _FUNCTION and number in _FUNCTION_KEY:
                    key[_FUNCTION_KEY[number]] = bytes(buf[a:stop])
                child = children.get(number)
                if child is not None:
                    if depth + 1 > max_depth:
                        raise ScanError(f"nests subgraphs deeper than {max_depth} levels")
                    child_level = level + 1 if child == _GRAPH and kind == _ATTR else level
                    if child_level > max_nesting:
                        raise LimitExceeded(_nesting_message(child_level, max_nesting))
                    # A sparse tensor's values learn its dense size once its dims are read.
                    mark = _VALUES if kind == _SPARSE and number == _SPARSE_VALUES else -1
                    pending.append((child, a, stop, depth + 1, owner_id, child_level, mark))
        if kind == _NODE:
            owner.nodes += 1
            owner.level = max(owner.level, level)
            call = owner.calls.setdefault((_domain(key[0]), key[1], key[2]), [0, 0])
            call[0] += 1
            call[1] = max(call[1], level)
            if owner is main and limits.max_nodes and main.nodes > limits.max_nodes:
                raise LimitExceeded(_nodes_message(main.nodes, limits.max_nodes, more=True))
        elif kind == _FUNCTION:
            functions[(_domain(key[0]), key[1], key[2])] = owner_id
        elif kind == _TENSOR:
            if dense >= 0:  # a sparse tensor's values: what densifying it makes
                owner.tensor_bytes += dense * _ELEMENT_BYTES.get(data_type, _DEFAULT_ELEMENT_BYTES)
            else:
                owner.tensor_bytes += _product(dims) * _ELEMENT_BYTES.get(data_type, _DEFAULT_ELEMENT_BYTES)
        elif kind == _SPARSE:
            count = _product(dims)
            pending = [(*c[:6], count) if c[6] == _VALUES else c for c in pending]
        stack.extend(pending)
    inlined, nesting, tensor_bytes = _inline(main, owners, functions, limits)
    return ScanReport(
        tensors=counts[_TENSOR],
        graphs=counts[_GRAPH],
        nodes=counts[_NODE],
        inlined_nodes=inlined,
        nesting=nesting,
        tensor_bytes=tensor_bytes,
    )


def _inline(
    main: _Owner, owners: list[_Owner], functions: dict[tuple[bytes, bytes, bytes], int], limits: ScanLimits
) -> tuple[int, int, int]:
    """(nodes, nesting, tensor bytes) of the main graph with every call of a
    model-local function replaced by its body, as onnxruntime inlines them,
    computed without expanding anything: each function's cost is computed
    once (memoised) and multiplied by its calls, saturating at the limits,
    so a tiny model whose functions call each other twice, many levels
    deep, is counted in a few steps. A function that calls itself is refused."""
    node_cap = limits.max_nodes + 1 if limits.max_nodes else _COUNT_CAP
    byte_cap = limits.max_tensor_bytes + 1 if limits.max_tensor_bytes else _COUNT_CAP
    memo: dict[int, tuple[int, int, int]] = {}
    visiting: set[int] = set()
    stack = [(0, False)]
    while stack:
        owner_id, expanded = stack.pop()
        if owner_id in memo:
            continue
        owner = owners[owner_id]
        callees = [(functions[k], c) for k, c in owner.calls.items() if k in functions]
        if not expanded:
            visiting.add(owner_id)
            stack.append((owner_id, True))
            for callee, _ in callees:
                if callee in visiting:
                    raise LimitExceeded("has model-local functions that call themselves, which cannot be inlined")
                if callee not in memo:
                    stack.append((callee, False))
            continue
        nodes, nesting, tensor_bytes = owner.nodes, owner.level, owner.tensor_bytes
        for callee, (count, level) in callees:
            f_nodes, f_nesting, f_bytes = memo[callee]
            nodes = min(node_cap, nodes + count * f_nodes)
            tensor_bytes = min(byte_cap, tensor_bytes + count * f_bytes)
            nesting = max(nesting, level + 1 + f_nesting)
        memo[owner_id] = (nodes, nesting, min(byte_cap, tensor_bytes))
        visiting.discard(owner_id)
    nodes, nesting, tensor_bytes = memo[0]
    if limits.max_nodes and nodes > limits.max_nodes:
        raise LimitExceeded(_nodes_message(nodes, limits.max_nodes, more=nodes >= node_cap))
    if limits.max_nesting and nesting > limits.max_nesting:
        raise LimitExceeded(_nesting_message(nesting, limits.max_nesting))
    if limits.max_tensor_bytes and tensor_bytes > limits.max_tensor_bytes:
        amount = f"more than {limits.max_tensor_bytes}" if tensor_bytes >= byte_cap else str(tensor_bytes)
        raise LimitExceeded(
            f"declares tensors of {amount} bytes once materialised (sparse tensors densified, functions "
            f"inlined), more memory than one model may take (MAX_MODEL_BYTES = {limits.max_tensor_bytes} bytes)"
        )
    return nodes, nesting, tensor_bytes


def _nodes_message(nodes: int, limit: int, *, more: bool) -> str:
    amount = f"more than {limit}" if more else str(nodes)
    return (
        f"has {amount} nodes with its model-local functions inlined (as onnxruntime inlines them); "
        f"at most {limit} are allowed (MAX_MODEL_NODES)"
    )


def _nesting_message(level: int, limit: int) -> str:
    return (
        f"nests {level} levels deep (subgraphs and model-local function calls); "
        f"at most {limit} are allowed (MAX_MODEL_NESTING)"
    )


def _domain(domain: bytes) -> bytes:
    return b"" if domain == b"ai.onnx" else domain


def _product(dims: list[int]) -> int:
    count = 1
    for dim in dims:
        if dim >= 1 << 63:  # a negative int64 on the wire: no real size
            dim = 0
        count = min(_COUNT_CAP, count * dim)
    return count


_MAX_RANK = 64


def _append_dim(dims: list[int], value: int) -> None:
    dims.append(value)
    if len(dims) > _MAX_RANK:
        raise ScanError(f"declares a tensor of more than {_MAX_RANK} dimensions")


def _packed(buf: memoryview, pos: int, end: int) -> list[int]:
    values: list[int] = []
    while pos < end:
        value, pos = _varint(buf, pos, end)
        _append_dim(values, value)
    return values


class FieldBudget:
    """Fields one walk may still read (:data:`MAX_FIELDS`), shared by its nested walks."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_FIELDS


def fields(buf: memoryview, pos: int, end: int, budget: FieldBudget) -> Iterator[tuple[int, int, int, int, int]]:
    """The fields of the message ``buf[pos:end]``, one at a time (a graph's
    nodes are never held in a list): ``(number, wire type, start, a, b)``,
    ``start`` where the field (its key) begins; for a varint ``a`` is its
    value and ``b`` where it ends, otherwise ``buf[a:b]`` is its payload
    (length-delimited) or its bytes (fixed-width). The bounds of every walk
    here (the scan, the signature, the locale rewrite): at most ``budget``'s
    fields, no field number 0, no group, nothing past ``end``. The scan
    reads every field of a model through it: 1.16-1.24x the time of the
    inlined loop it replaced (82390e6) on ``hostile_models.node_chain(150_000)``
    (596 -> 690 ms, best of 7, two runs at load 3-5), under 1% of that
    model's load (~15 s of session creation); 0.1 ms for a 48 MiB MLP."""
    while pos < end:
        budget.left -= 1
        if budget.left < 0:
            raise ScanError(f"has more than {MAX_FIELDS} protobuf fields")
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ScanError("is not a valid protobuf message (field number 0)")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, start, value, pos
            continue
        if wire == _LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
        elif wire == _I64:
            stop = pos + 8
        elif wire == _I32:
            stop = pos + 4
        else:  # groups (3, 4) are not used by onnx.proto; 6, 7 are invalid
            raise ScanError(f"is not a valid ONNX protobuf (wire type {wire})")
        if stop > end:
            raise ScanError("is truncated or not a protobuf message")
        yield number, wire, start, pos, stop
        pos = stop


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ScanError("is truncated or not a protobuf message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
