"""Small ONNX models built at test time with onnx.helper, and numpy references.

Shared by the ONNX tests and the benchmarks; nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# onnxruntime 1.32 reads IR version 10 models; pin it so a newer onnx
# package does not stamp a version the runtime refuses.
IR_VERSION = 10


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


@dataclass
class Mlp:
    """``relu(x @ w1 + b1) @ w2 + b2`` with a symbolic (or fixed) batch dimension."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    batch: str | int = "batch"

    @classmethod
    def random(
        cls, n_in: int = 4, hidden: int = 8, n_out: int = 3, *, seed: int = 0, batch: str | int = "batch"
    ) -> Mlp:
        rng = np.random.default_rng(seed)
        return cls(
            rng.standard_normal((n_in, hidden)).astype(np.float32),
            rng.standard_normal(hidden).astype(np.float32),
            rng.standard_normal((hidden, n_out)).astype(np.float32),
            rng.standard_normal(n_out).astype(np.float32),
            batch,
        )

    def onnx_bytes(self) -> bytes:
        n_in, n_out = self.w1.shape[0], self.w2.shape[1]
        nodes = [
            helper.make_node("MatMul", ["x", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h2"]),
            helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
            helper.make_node("Add", ["h3", "b2"], ["y"]),
        ]
        graph = helper.make_graph(
            nodes,
            "mlp",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [self.batch, n_in])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [self.batch, n_out])],
            [
                numpy_helper.from_array(a, n)
                for a, n in ((self.w1, "w1"), (self.b1, "b1"), (self.w2, "w2"), (self.b2, "b2"))
            ],
        )
        return _model(graph)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The same computation in numpy."""
        h = np.maximum(x.astype(np.float32) @ self.w1 + self.b1, 0)
        return h @ self.w2 + self.b2


def multi_io_model() -> bytes:
    """Inputs ``a`` float32 [n, 3] and ``ids`` int64 [n]; outputs ``sum`` = a + 1
    (float32 [n, 3]) and ``doubled`` = ids * 2 (int64 [n]). Both share dim ``n``."""
    nodes = [
        helper.make_node("Add", ["a", "one"], ["sum"]),
        helper.make_node("Mul", ["ids", "two"], ["doubled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "multi",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("doubled", TensorProto.INT64, ["n"]),
        ],
        [
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
            numpy_helper.from_array(np.array(2, dtype=np.int64), "two"),
        ],
    )
    return _model(graph)


def log_model() -> bytes:
    """``y = Log(x)`` for float x of shape [N]: log(0) and log(-1) are not finite."""
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    return _model(graph)


def flag_model() -> bytes:
    """``out = Not(flag)`` for a bool input of shape [2]."""
    graph = helper.make_graph(
        [helper.make_node("Not", ["flag"], ["out"])],
        "flag",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, [2])],
        [helper.make_tensor_value_info("out", TensorProto.BOOL, [2])],
    )
    return _model(graph)


def big_mlp(target_bytes: int, *, width: int = 1024, seed: int = 0) -> tuple[bytes, int]:
    """A chain of ``width``x``width`` MatMuls whose weights total about
    ``target_bytes``; returns the model and its input width."""
    rng = np.random.default_rng(seed)
    layers = max(1, round(target_bytes / (width * width * 4)))
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        inits.append(
            numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"w{i}")
        )
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    # check_model refuses protos over 2 GiB only; skip it for speed here.
    return model.SerializeToString(), width


def identity_model(datatype: str, dims: tuple[int | str, ...] = ("n", 2)) -> bytes:
    """``y = Identity(x)`` for one protocol datatype (``FP32``, ``BYTES``, ...), shape ``dims``."""
    from chalicelib.datatypes import BY_OIP

    elem = BY_OIP[datatype].onnx_elem
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("x", elem, list(dims))],
        [helper.make_tensor_value_info("y", elem, list(dims))],
    )
    return _model(graph)


def conv_model(channels: tuple[int, int] = (64, 512), *, seed: int = 0) -> bytes:
    """A small image model (two 3x3 convolutions, stride 2, with Relu, then a
    global average pool; ~300k weights): float32 ``image`` [n, 3, 224, 224] ->
    ``features`` [n, channels[1]]. About 10 ms a run on this machine when it is
    quiet, like the light SqueezeNet of issue 18."""
    rng = np.random.default_rng(seed)
    first, second = channels
    w1 = (rng.standard_normal((first, 3, 3, 3)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((second, first, 3, 3)) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", second])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return _model(graph)


def small_cnn(*, channels: int = 4, size: int = 8, classes: int = 3, seed: int = 0) -> bytes:
    """A small CNN for batch jobs: x [batch, 1, size, size] -> Conv 3x3 (``channels``
    filters) -> Relu -> GlobalAveragePool -> Flatten -> ``features`` [batch, channels]
    and ``logits`` = features @ w + b [batch, classes]. Two outputs, batch axis first."""
    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "k"),
        numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "kb"),
        numpy_helper.from_array(rng.standard_normal((channels, classes)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["features"]),
        helper.make_node("MatMul", ["features", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, size, size])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", channels]),
        ],
        weights,
    )
    return _model(graph)


def small_conv(channels: int = 16, seed: int = 0) -> bytes:
    """An image model for 1x3x224x224 float32: two 3x3 convolutions (the
    second with stride 2), ReLU, global average pooling: ``y`` [1, channels]."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.1
    w2 = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["r1"]),
            helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("Relu", ["c2"], ["r2"]),
            helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
            helper.make_node("Flatten", ["p"], ["y"]),
        ],
        "small_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return _model(graph)
