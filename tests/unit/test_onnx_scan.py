"""The scan's load-time bounds: nodes with functions inlined (counted, not
expanded), nesting, tensors' dense size (sparse ones densified)."""

from __future__ import annotations

import time

import pytest
from onnx import TensorProto, helper

from chalicelib.runners import onnx_scan
from tests.support import hostile_models as hm
from tests.support.onnx_models import Mlp

LIMITS = onnx_scan.ScanLimits(max_nodes=100_000, max_nesting=16, max_tensor_bytes=512 * 1024 * 1024)


def test_inlined_nodes_are_counted_without_expanding_them():
    # depth 10, two calls each: nodes(f0) = 1, nodes(fi) = 2 call nodes + 2 nodes(fi-1)
    # = 3 * 2^i - 2; plus the main graph's one call node.
    report = onnx_scan.scan(hm.function_bomb(10), LIMITS)
    assert report.inlined_nodes == 3 * 2**10 - 2 + 1
    assert report.nesting == 11
    started = time.perf_counter()
    with pytest.raises(onnx_scan.LimitExceeded, match="MAX_MODEL_NODES"):
        onnx_scan.scan(hm.function_bomb(64), onnx_scan.ScanLimits(max_nodes=100_000, max_nesting=100))
    assert time.perf_counter() - started < 0.1  # 2^64 nodes, never expanded


def test_a_plain_graph_over_the_node_limit_stops_the_scan_early():
    with pytest.raises(onnx_scan.LimitExceeded, match="more than 1000 nodes"):
        onnx_scan.scan(hm.node_chain(5000), onnx_scan.ScanLimits(max_nodes=1000))
    assert onnx_scan.scan(hm.node_chain(1000), onnx_scan.ScanLimits(max_nodes=1000)).inlined_nodes == 1000


def test_a_function_calling_itself_is_refused():
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("loop", 1)]
    f = helper.make_function("loop", "f", ["a"], ["b"], [helper.make_node("f", ["a"], ["b"], domain="loop")], opsets)
    graph = helper.make_graph(
        [helper.make_node("f", ["x"], ["y"], domain="loop")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=opsets, functions=[f]).SerializeToString()
    with pytest.raises(onnx_scan.LimitExceeded, match="call themselves"):
        onnx_scan.scan(model, LIMITS)


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_sparse_tensors_count_at_their_dense_size(where):
    small = onnx_scan.scan(hm.huge_sparse(1000, where=where), LIMITS)
    assert small.tensor_bytes >= 4000
    with pytest.raises(onnx_scan.LimitExceeded, match="MAX_MODEL_BYTES"):
        onnx_scan.scan(hm.huge_sparse(1_000_000_000, where=where), LIMITS)


def test_nesting_past_the_limit_is_refused_and_real_models_pass():
    with pytest.raises(onnx_scan.LimitExceeded, match="MAX_MODEL_NESTING"):
        onnx_scan.scan(hm.deep_if(20), LIMITS)
    assert onnx_scan.scan(hm.deep_if(10), LIMITS).nesting == 11
    report = onnx_scan.scan(Mlp.random().onnx_bytes(), LIMITS)
    assert report.inlined_nodes == 5 and report.nesting == 0 and report.tensor_bytes > 0


def test_no_limits_means_none_checked():
    assert onnx_scan.scan(hm.function_bomb(20)).inlined_nodes > 2**20
