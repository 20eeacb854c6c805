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

from collections.abc import Buffer
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
"""Deepest message nesting accepted: each If/Loop level is three (graph, node,
attribute), so about 20 levels of subgraphs; real models nest a handful."""
MAX_FIELDS = 5_000_000
"""Most fields visited; a graph of 100k nodes has well under a million."""


class ScanError(ValueError):
    """The file is not a well-formed ONNX model, or is too deeply nested or too large to scan."""


class ExternalData(ValueError):
    """A tensor in the model names data outside the file."""


@dataclass(frozen=True)
class ScanReport:
    """What the scan saw: counts, for logs and limits."""

    tensors: int
    graphs: int
    nodes: int


def scan(data: Buffer) -> ScanReport:
    """Walk ``data`` as a ModelProto; raise :class:`ExternalData` or :class:`ScanError`.

    ``data`` is any buffer (``bytes``, ``mmap``, ``memoryview``): it is read in
    place, never copied, and the view taken of it is released on return, so a
    mapping can be closed right after."""
    with memoryview(data) as buf:
        return _scan(buf)


def _scan(buf: memoryview) -> ScanReport:
    counts = {_TENSOR: 0, _GRAPH: 0, _NODE: 0}
    fields = 0
    # Explicit stack of (kind, start, end, depth): no recursion, bounded depth.
    stack: list[tuple[int, int, int, int]] = [(_MODEL, 0, len(buf), 0)]
    while stack:
        kind, pos, end, depth = stack.pop()
        if kind in counts:
            counts[kind] += 1
        children = _CHILDREN[kind]
        while pos < end:
            fields += 1
            if fields > MAX_FIELDS:
                raise ScanError(f"has more than {MAX_FIELDS} protobuf fields")
            key, pos = _varint(buf, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ScanError("is not a valid protobuf message (field number 0)")
            if wire == _VARINT:
                value, pos = _varint(buf, pos, end)
                if kind == _TENSOR and number == _DATA_LOCATION and value == _EXTERNAL:
                    raise ExternalData()
            elif wire == _I64:
                pos += 8
            elif wire == _I32:
                pos += 4
            elif wire == _LEN:
                length, pos = _varint(buf, pos, end)
                stop = pos + length
                if stop > end:
                    raise ScanError("is truncated or not a protobuf message")
                if kind == _TENSOR and number == _EXTERNAL_DATA:
                    raise ExternalData()
                child = children.get(number)
                if child is not None:
                    if depth + 1 > MAX_DEPTH:
                        raise ScanError(f"nests subgraphs deeper than {MAX_DEPTH} levels")
                    stack.append((child, pos, stop, depth + 1))
                pos = stop
            else:  # groups (3, 4) are not used by onnx.proto; 6, 7 are invalid
                raise ScanError(f"is not a valid ONNX protobuf (wire type {wire})")
            if pos > end:
                raise ScanError("is truncated or not a protobuf message")
    return ScanReport(tensors=counts[_TENSOR], graphs=counts[_GRAPH], nodes=counts[_NODE])


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
