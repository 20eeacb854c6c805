"""The pinned table of what the shipped onnxruntime loads, checked by asking it.

A newer onnxruntime (requirements.txt) fails the version check first: then
re-run the probes below against it and update ``onnx_support``. Issue 18,
finding 3.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from chalicelib.runners import onnx_support


def _model(domain: str, version: int, ir_version: int = 8) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    imports = [helper.make_opsetid("", 13)] if domain else []
    imports.append(helper.make_opsetid(domain, version))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir_version
    return model.SerializeToString()


def _loads(data: bytes) -> str | None:
    """onnxruntime's refusal, or ``None`` if it loads the model."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        return str(exc)
    return None


def test_the_table_is_for_the_shipped_onnxruntime():
    assert ort.__version__ == onnx_support.ORT_VERSION


@pytest.mark.parametrize("domain", sorted(onnx_support.MAX_OPSETS))
def test_highest_opset_of_each_domain_loads_and_the_next_is_refused(domain):
    highest = onnx_support.MAX_OPSETS[domain]
    assert _loads(_model(domain, highest)) is None
    refusal = _loads(_model(domain, highest + 1))
    assert refusal is not None and "ValidateOpsetForDomain" in refusal
    assert onnx_support.unsupported(8, {domain: highest}) == []
    assert onnx_support.unsupported(8, {domain: highest + 1})


def test_highest_ir_version_loads_and_the_next_is_refused():
    assert _loads(_model("", 13, onnx_support.MAX_IR_VERSION)) is None
    assert "IR version" in (_loads(_model("", 13, onnx_support.MAX_IR_VERSION + 1)) or "")
    assert onnx_support.unsupported(onnx_support.MAX_IR_VERSION + 1, {})


def test_unknown_domains_are_left_to_onnxruntime_which_does_not_bound_them():
    # Custom operator domains and model-local function domains: any version loads.
    assert _loads(_model("com.example.custom", 1000)) is None
    assert onnx_support.unsupported(8, {"com.example.custom": 1000}) == []
