"""Hostile ONNX models, built at test time with onnx.helper: each one is a
class of attack (external data, load-time or run-time materialisation,
unbounded loops, deep nesting, huge strings, huge outputs), not one example.

Nothing here is checked by ``onnx.checker``: several are deliberately invalid.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 10


def _model(graph: onnx.GraphProto, *, opset: int = OPSET, functions: list[onnx.FunctionProto] | None = None) -> bytes:
    imports = [helper.make_opsetid("", opset)] + [
        helper.make_opsetid(d, 1) for d in sorted({f.domain for f in functions or []})
    ]
    model = helper.make_model(graph, opset_imports=imports, functions=functions or [])
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def _external(tensor: TensorProto, location: str) -> TensorProto:
    """Turn ``tensor`` into one whose bytes live in ``location``."""
    length = len(tensor.raw_data) or 4
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _identity_graph(
    name: str, nodes: list, inits: list, out: str = "y", shape: list | None = None, sparse: list | None = None
) -> onnx.GraphProto:
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(out, TensorProto.UINT8, shape or [4])],
        inits,
        sparse_initializer=sparse or [],
    )


def _leak_tensor(location: str, name: str = "w") -> TensorProto:
    return _external(numpy_helper.from_array(np.zeros(4, np.uint8), name), location)


def external_data_models(location: str) -> dict[str, bytes]:
    """One model per place a tensor can hide external data, each returning
    ``location``'s bytes (on a runtime that would read them) as output ``y``."""
    models: dict[str, bytes] = {}
    # 1. A graph initializer.
    models["initializer"] = _model(
        _identity_graph("init", [helper.make_node("Identity", ["w"], ["y"])], [_leak_tensor(location)])
    )
    # 2. A Constant node's `value` attribute.
    const = helper.make_node("Constant", [], ["y"], value=_leak_tensor(location, "c"))
    models["constant_value"] = _model(_identity_graph("const", [const], []))
    # 3. A Constant node's `sparse_value` attribute (external values tensor).
    values = _leak_tensor(location, "v")
    indices = numpy_helper.from_array(np.arange(4, dtype=np.int64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    models["constant_sparse_value"] = _model(
        _identity_graph("sparse", [helper.make_node("Constant", [], ["y"], sparse_value=sparse)], [])
    )
    # 4. A sparse initializer.
    sparse_init = helper.make_sparse_tensor(_leak_tensor(location, "s"), indices, [4])
    sparse_init.values.name = "s"
    models["sparse_initializer"] = _model(
        _identity_graph("sparse_init", [helper.make_node("Identity", ["s"], ["y"])], [], sparse=[sparse_init])
    )
    # 5. Inside an If's branch, two levels deep (If in If).
    inner_leak = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y_in"])],
        "leak",
        [],
        [helper.make_tensor_value_info("y_in", TensorProto.UINT8, [4])],
        [_leak_tensor(location)],
    )
    inner_if = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y_mid"], then_branch=inner_leak, else_branch=inner_leak)],
        "mid",
        [],
        [helper.make_tensor_value_info("y_mid", TensorProto.UINT8, [4])],
    )
    cond = numpy_helper.from_array(np.array(True), "cond")
    models["nested_if"] = _model(
        _identity_graph(
            "outer", [helper.make_node("If", ["cond"], ["y"], then_branch=inner_if, else_branch=inner_if)], [cond]
        )
    )
    # 6. A tensor in a model-local function's Constant node.
    fn = helper.make_function(
        "hostile",
        "Leak",
        [],
        ["out"],
        [helper.make_node("Constant", [], ["out"], value=_leak_tensor(location, "f"))],
        [helper.make_opsetid("", OPSET)],
    )
    models["function"] = _model(
        _identity_graph("fn", [helper.make_node("Leak", [], ["y"], domain="hostile")], []), functions=[fn]
    )
    # 7. Only the data_location flag (no external_data entries).
    flagged = numpy_helper.from_array(np.zeros(4, np.uint8), "w")
    flagged.data_location = TensorProto.EXTERNAL
    models["location_flag_only"] = _model(
        _identity_graph("flag", [helper.make_node("Identity", ["w"], ["y"])], [flagged])
    )
    return models


def constant_of_shape_gather(n: int) -> bytes:
    """``ConstantOfShape([n])`` then ``Gather``: a 164-byte file that folds
    (at load) or runs (at predict) into an n-float tensor."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "ConstantOfShape", ["shape"], ["big"], value=numpy_helper.from_array(np.array([1.0], np.float32))
            ),
            helper.make_node("Gather", ["big", "idx"], ["y"], axis=0),
        ],
        "cos_gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([n], np.int64), "shape")],
    )
    return _model(graph)


def range_sum(n: int) -> bytes:
    """``ReduceSum(Range(0, n, 1))`` with the limit as an input: a run-time
    materialisation that no load-time check can see."""
    graph = helper.make_graph(
        [
            helper.make_node("Range", ["start", "n", "step"], ["r"]),
            helper.make_node("ReduceSum", ["r"], ["y"], keepdims=0),
        ],
        "range",
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [
            numpy_helper.from_array(np.array(0, np.float32), "start"),
            numpy_helper.from_array(np.array(1, np.float32), "step"),
        ],
    )
    return _model(graph)


def constant_of_shape_output(n: int, *, static: bool) -> bytes:
    """``y = ConstantOfShape(n)``: an n-element output, declared with a
    static shape ``[n]`` or an unknown one."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["x_out"]),
            helper.make_node(
                "ConstantOfShape", ["shape"], ["y"], value=numpy_helper.from_array(np.array([1.0], np.float32))
            ),
        ],
        "cos_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [n] if static else None),
        ],
        [numpy_helper.from_array(np.array([n], np.int64), "shape")],
    )
    return _model(graph)


def endless_loop(trip_count: int = 2**62) -> bytes:
    """A ``Loop`` adding 1 to x ``trip_count`` times: never returns in practice."""
    body = helper.make_graph(
        [helper.make_node("Add", ["v_in", "one"], ["v_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1]),
        ],
        [numpy_helper.from_array(np.array([1.0], np.float32), "one")],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array(trip_count, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond")],
    )
    return _model(graph)


def string_doubling(rounds: int = 48) -> bytes:
    """A ``Loop`` that doubles a string tensor's elements by concatenation
    each round (``StringConcat``, opset 20): string bytes live on the heap,
    outside onnxruntime's arena; 2^48 bytes if nothing stops it."""
    body = helper.make_graph(
        [
            helper.make_node("StringConcat", ["s_in", "s_in"], ["s_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_in", TensorProto.STRING, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_out", TensorProto.STRING, [1]),
        ],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "cond", "s"], ["y"], body=body)],
        "strings",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [1])],
        [numpy_helper.from_array(np.array(rounds, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond")],
    )
    return _model(graph, opset=20)


def deep_if(depth: int) -> bytes:
    """``If`` branches nested ``depth`` levels deep (recursion through subgraphs)."""
    leaf = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y0"])],
        "leaf",
        [],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, [1])],
    )
    graph = leaf
    for level in range(1, depth + 1):
        # Only the then-branch nests (both would double the file per level).
        graph = helper.make_graph(
            [helper.make_node("If", ["cond"], [f"y{level}"], then_branch=graph, else_branch=leaf)],
            f"level{level}",
            [],
            [helper.make_tensor_value_info(f"y{level}", TensorProto.FLOAT, [1])],
        )
    top = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=graph, else_branch=leaf)],
        "top",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array(True), "cond")],
    )
    return _model(top)


def sequence_output(n: int) -> bytes:
    """``SequenceEmpty`` + a Loop inserting x (float [k]) ``n`` times: a
    sequence output of n*k elements, whose size no declared shape tells."""
    body = helper.make_graph(
        [
            helper.make_node("SequenceInsert", ["seq_in", "x"], ["seq_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_sequence_value_info("seq_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_sequence_value_info("seq_out", TensorProto.FLOAT, None),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("SequenceEmpty", [], ["empty"], dtype=TensorProto.FLOAT),
            helper.make_node("Loop", ["M", "cond", "empty"], ["y"], body=body),
        ],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["k"])],
        [helper.make_tensor_sequence_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(n, np.int64), "M"), numpy_helper.from_array(np.array(True), "cond")],
    )
    return _model(graph)


def one_long_matmul(tile: int = 4) -> bytes:
    """x [1000, 1000] tiled to [1000*tile, 1000*tile], multiplied by itself:
    one operator of ~(1000*tile)^3 multiply-adds (seconds), within the memory caps."""
    graph = helper.make_graph(
        [
            helper.make_node("Tile", ["x", "reps"], ["t"]),
            helper.make_node("MatMul", ["t", "t"], ["m"]),
            helper.make_node("ReduceSum", ["m"], ["y"], keepdims=0),
        ],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array([tile, tile], np.int64), "reps")],
    )
    return _model(graph)


# -- issue 17: load bombs, densified sparse tensors, operators outside the arena ----------


def function_bomb(depth: int = 16, calls: int = 2) -> bytes:
    """Model-local functions each calling the previous one ``calls`` times,
    ``depth`` levels deep: ~1.3 KB that onnxruntime inlines into
    ``calls ** depth`` nodes at session creation."""
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("bomb", 1)]
    functions = [helper.make_function("bomb", "f0", ["a"], ["b"], [helper.make_node("Neg", ["a"], ["b"])], opsets)]
    for level in range(1, depth + 1):
        names = ["a"] + [f"t{i}" for i in range(1, calls)] + ["b"]
        nodes = [helper.make_node(f"f{level - 1}", [names[i]], [names[i + 1]], domain="bomb") for i in range(calls)]
        functions.append(helper.make_function("bomb", f"f{level}", ["a"], ["b"], nodes, opsets))
    graph = helper.make_graph(
        [helper.make_node(f"f{depth}", ["x"], ["y"], domain="bomb")],
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return _model(graph, functions=functions)


def node_chain(n: int = 150_000) -> bytes:
    """``n`` ``Neg`` nodes in a chain: a plain graph that takes seconds to load."""
    nodes = [helper.make_node("Neg", [f"v{i}" if i else "x"], [f"v{i + 1}" if i + 1 < n else "y"]) for i in range(n)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return _model(graph)


def huge_sparse(dense: int, *, where: str) -> bytes:
    """One stored value in a sparse tensor of ``dense`` float elements, as a
    sparse initializer (``where="initializer"``) or a ``Constant``'s
    ``sparse_value`` (``"constant"``): under 200 bytes that onnxruntime
    densifies at load."""
    values = numpy_helper.from_array(np.array([1.0], np.float32), "s")
    indices = numpy_helper.from_array(np.array([dense - 1], np.int64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [dense])
    nodes = [helper.make_node("Gather", ["s", "idx"], ["y"], axis=0)]
    inits: list = []
    if where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["s"], sparse_value=sparse))
    else:
        inits = [sparse]
    graph = helper.make_graph(
        nodes,
        "sparse",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        sparse_initializer=inits,
    )
    return _model(graph)


def string_tile(repeats: int) -> bytes:
    """``Tile`` of a string input ``repeats`` times: one operator whose
    strings live on the heap, outside the capped arena (a 1 MiB input makes
    ``repeats`` MiB inside a single kernel call)."""
    graph = helper.make_graph(
        [helper.make_node("Tile", ["s", "reps"], ["t"]), helper.make_node("Shape", ["t"], ["y"])],
        "string_tile",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1])],
        [numpy_helper.from_array(np.array([repeats], np.int64), "reps")],
    )
    return _model(graph)


def tree_ensemble_targets(n_targets: int) -> bytes:
    """An ``ai.onnx.ml`` ``TreeEnsembleRegressor`` with one leaf and
    ``n_targets`` targets: the kernel's per-row scores are a heap vector of
    that size, outside the arena; the output's shape is not declared."""
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["x"],
        ["scores"],
        domain="ai.onnx.ml",
        n_targets=n_targets,
        nodes_treeids=[0],
        nodes_nodeids=[0],
        nodes_featureids=[0],
        nodes_values=[0.0],
        nodes_modes=["LEAF"],
        nodes_truenodeids=[0],
        nodes_falsenodeids=[0],
        nodes_missing_value_tracks_true=[0],
        target_treeids=[0],
        target_nodeids=[0],
        target_ids=[n_targets - 1],
        target_weights=[1.0],
    )
    graph = helper.make_graph(
        [node, helper.make_node("Shape", ["scores"], ["y"])],
        "trees",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
    )
    imports = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = IR_VERSION
    return model.SerializeToString()


def quadratic_nms() -> bytes:
    """``NonMaxSuppression`` over ``n`` disjoint boxes made in the graph from
    one number (``n`` is an input): every box is kept, and each is compared
    with every kept one, ~n^2/2 IoUs in one operator (minutes for n = 200k)."""
    nodes = [
        helper.make_node("Range", ["zero", "n", "one"], ["i"]),
        helper.make_node("Unsqueeze", ["i", "axis1"], ["col"]),
        helper.make_node("Add", ["col", "half"], ["col2"]),
        helper.make_node("Concat", ["col", "col", "col2", "col2"], ["b"], axis=1),
        helper.make_node("Unsqueeze", ["b", "axis0"], ["boxes"]),
        helper.make_node("Unsqueeze", ["i", "axes01"], ["scores"]),
        helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out"], ["sel"]),
        helper.make_node("Shape", ["sel"], ["y"]),
    ]
    f = np.float32
    graph = helper.make_graph(
        nodes,
        "nms",
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
        [
            numpy_helper.from_array(np.array(0, f), "zero"),
            numpy_helper.from_array(np.array(1, f), "one"),
            numpy_helper.from_array(np.array(0.5, f), "half"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
            numpy_helper.from_array(np.array([0, 1], np.int64), "axes01"),
            numpy_helper.from_array(np.array([1 << 40], np.int64), "max_out"),
        ],
    )
    return _model(graph)
