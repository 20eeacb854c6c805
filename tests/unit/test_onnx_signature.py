"""The signature read from a model's bytes is what onnxruntime itself reports.

Checked on every model of the ONNX project's backend test suite that ships in
the ``onnx`` wheel (the stored ``data/**/*.onnx`` models and the node test
cases, which the wheel ships as generators), on scikit-learn models converted
with skl2onnx (with and without ZipMap), and on hand-built edge cases:
initializers listed as graph inputs, sparse initializers, symbolic and
unknown dimensions, sequences, maps and optionals. Issue 18, finding 2.
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from chalicelib.runners.onnx_scan import ScanError
from chalicelib.runners.onnx_signature import read_signature

BACKEND_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def _theirs(session: ort.InferenceSession) -> tuple[list, list]:
    """onnxruntime's view, in the signature's terms: -1 for a symbolic or
    unknown dimension; no shape (``None``) for what is not a tensor."""

    def one(arg: ort.NodeArg) -> tuple:
        tensor = arg.type.startswith("tensor(")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape) if tensor else None
        return arg.name, arg.type, shape

    return [one(i) for i in session.get_inputs()], [one(o) for o in session.get_outputs()]


def _ours(data: bytes) -> tuple[list, list]:
    signature = read_signature(data)[1]
    return (
        [(i.name, i.onnx_type, i.shape) for i in signature.inputs],
        [(o.name, o.onnx_type, o.shape) for o in signature.outputs],
    )


def _unknown_rank(ours: tuple[list, list]) -> tuple[list, list]:
    """Ours as onnxruntime prints it: a tensor of unknown rank (ours: no
    shape) shows as shape [] there, like a scalar."""

    def one(arg: tuple) -> tuple:
        name, kind, shape = arg
        return name, kind, () if shape is None and kind.startswith("tensor(") else shape

    return [one(i) for i in ours[0]], [one(o) for o in ours[1]]


def _compare(models: list[tuple[str, bytes]]) -> tuple[int, list[str]]:
    """How many models onnxruntime loaded, and where the two readings differ."""
    options, compared, differ = _options(), 0, []
    for name, data in models:
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - operators this build lacks: nothing to compare
            continue
        compared += 1
        theirs, ours = _theirs(session), _ours(data)
        if theirs != ours and _unknown_rank(ours) != theirs:
            differ.append(f"{name}: onnxruntime {theirs} != ours {ours}")
    return compared, differ


def test_every_stored_backend_test_model_reads_as_onnxruntime_reports_it():
    paths = sorted(glob.glob(os.path.join(BACKEND_DATA, "**", "*.onnx"), recursive=True))
    assert len(paths) >= 100, BACKEND_DATA
    models = [(os.path.relpath(p, BACKEND_DATA), open(p, "rb").read()) for p in paths]
    compared, differ = _compare(models)
    assert compared >= 100 and not differ, differ[:5]


def test_every_backend_node_test_case_reads_as_onnxruntime_reports_it():
    from onnx.backend.test.case import node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators' own numpy warnings
        cases = node.collect_testcases()
    models = [(case.name, case.model.SerializeToString()) for case in cases if case.model is not None]
    assert len(models) >= 1500
    compared, differ = _compare(models)
    # Sequences, maps and optionals, IR 3 to the newest, every element type onnxruntime has.
    assert compared >= 1500 and not differ, differ[:5]


@pytest.mark.parametrize("zipmap", [True, False])
def test_scikit_learn_classifiers_with_and_without_zipmap(zipmap):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    fitted = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    data = to_onnx(
        fitted, x[:1], options={"zipmap": zipmap}, target_opset={"": 17, "ai.onnx.ml": 3}
    ).SerializeToString()
    assert _compare([("logreg", data)]) == (1, [])
    signature = read_signature(data)[1].to_json()
    assert signature["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4], "onnxType": "tensor(float)"}]
    probabilities = signature["outputs"][1]
    if zipmap:  # a sequence of maps: no OIP datatype, described as what it is
        assert probabilities == {
            "name": "output_probability",
            "datatype": None,
            "shape": None,
            "onnxType": "seq(map(int64,tensor(float)))",
        }
    else:
        assert probabilities == {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [-1, 2],
            "onnxType": "tensor(float)",
        }
    assert signature["opsets"][""] == 17 and "ai.onnx.ml" in signature["opsets"]


def _model(graph: onnx.GraphProto, ir_version: int, opset: int = 13) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model.SerializeToString()


@pytest.mark.parametrize("ir_version", [3, 4, 8])
def test_initializers_listed_as_inputs_are_left_out_as_onnxruntime_does(ir_version):
    # Before IR 4 every initializer had to be listed as an input; onnxruntime
    # leaves them out of get_inputs() (they are defaults, overridable) at every IR.
    w = numpy_helper.from_array(np.ones((2,), np.float32), "w")
    nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [2]),
    ]
    sparse = []
    if ir_version >= 4:  # sparse initializers came with IR 4
        values = numpy_helper.from_array(np.ones((1,), np.float32), "s")
        sparse = [helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0]), "i"), [2])]
        nodes = [helper.make_node("Add", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "s"], ["y"])]
        inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [2]))
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w], sparse_initializer=sparse
    )
    data = _model(graph, ir_version, opset=11 if ir_version < 8 else 13)
    assert _compare([("init", data)]) == (1, [])
    assert [i.name for i in read_signature(data)[1].inputs] == ["x"]


def test_unknown_rank_and_unknown_dims():
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["b"], ["c"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT16, None),
            helper.make_tensor_value_info("b", TensorProto.BFLOAT16, [3, "n", None]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT16, None),
            helper.make_tensor_value_info("c", TensorProto.BFLOAT16, [3, "n", None]),
        ],
    )
    data = _model(graph, 8)
    assert _compare([("dims", data)]) == (1, [])
    signature = read_signature(data)[1]
    # Unknown rank is null (onnxruntime prints [] for it, as for a scalar).
    assert (signature.inputs[0].datatype, signature.inputs[0].shape) == ("FP16", None)
    assert (signature.inputs[2].datatype, signature.inputs[2].shape) == ("INT64", ())
    # bfloat16 has no OIP name: described, not fed through the protocol.
    assert (signature.inputs[1].datatype, signature.inputs[1].shape) == (None, (3, -1, -1))
    assert signature.inputs[1].onnx_type == "tensor(bfloat16)"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x08\x07", b"hello world", bytes(range(256)), b"\x3a\xff\xff\xff\xff\x0f"],
    ids=["empty", "no-graph", "text", "bytes", "truncated"],
)
def test_what_is_not_a_model_is_a_scan_error(data):
    with pytest.raises(ScanError):
        read_signature(data)


def test_type_nesting_is_bounded():
    inner = helper.make_tensor_type_proto(TensorProto.FLOAT, [1])
    for _ in range(40):
        inner = helper.make_sequence_type_proto(inner)
    graph = helper.make_graph([], "g", [helper.make_value_info("x", inner)], [helper.make_value_info("x", inner)])
    with pytest.raises(ScanError, match="nests types"):
        read_signature(_model(graph, 8))


def test_a_graph_of_many_nodes_is_walked_without_holding_them():
    import tracemalloc

    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]).SerializeToString()
    nodes = b"\x0a\x00" * 500_000  # GraphProto.node, empty: skipped by length, one by one
    graph = nodes + b"\x62" + bytes([len(output)]) + output  # GraphProto.output = 12
    data = b"\x08\x08" + b"\x3a" + _varint(len(graph)) + graph  # ir_version 8, ModelProto.graph = 7
    tracemalloc.start()
    try:
        signature = read_signature(data)[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [o.name for o in signature.outputs] == ["y"]
    assert peak < 1024 * 1024, peak


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
