"""The nearest locale, and the wire-level rewrite that gives a model's StringNormalizers a locale (issue 21)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from chalicelib.errors import ModelRefused
from chalicelib.runners import onnx_locale, onnx_runner


def _normalizer(locale: str | None, name: str = "n") -> onnx.NodeProto:
    attrs = {"case_change_action": "LOWER"}
    if locale is not None:
        attrs["locale"] = locale
    return helper.make_node("StringNormalizer", ["x"], ["y"], name=name, **attrs)


def _model(locale: str | None, *, nested: bool = False) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.STRING, [-1])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [-1])
    if not nested:
        graph = helper.make_graph([_normalizer(locale)], "g", [x], [y])
    else:
        branch = helper.make_graph([_normalizer(locale, "inner")], "branch", [], [y])
        other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", [], [y])
        cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)
        graph = helper.make_graph([node], "g", [x, cond], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _locales(data: bytes) -> list[str]:
    model = onnx.load_from_string(data)
    found = []
    for graph in [model.graph, *(a.g for n in model.graph.node for a in n.attribute if a.g.node)]:
        for node in graph.node:
            if node.op_type == "StringNormalizer":
                found += [a.s.decode() for a in node.attribute if a.name == "locale"]
    return found


@pytest.mark.parametrize("locale", [None, "en_US.UTF-8", "a-much-longer-locale-name_XX.UTF-8@variant"])
def test_with_locale_sets_exactly_one_locale_and_keeps_the_rest(locale):
    data = _model(locale)
    rewritten = onnx_locale.with_locale(data, "C.UTF-8")
    onnx.checker.check_model(onnx.load_from_string(rewritten))
    assert _locales(rewritten) == ["C.UTF-8"]
    node = onnx.load_from_string(rewritten).graph.node[0]
    assert helper.get_attribute_value(next(a for a in node.attribute if a.name == "case_change_action")) == b"LOWER"
    session = ort.InferenceSession(rewritten, providers=["CPUExecutionProvider"])
    assert session.run(None, {"x": np.array(["ÉCOLE", "Straße"])})[0].tolist() == ["école", "straße"]


def test_with_locale_reaches_normalizers_in_subgraphs():
    rewritten = onnx_locale.with_locale(_model("xx_XX.UTF-8", nested=True), "C.UTF-8")
    onnx.checker.check_model(onnx.load_from_string(rewritten))
    assert _locales(rewritten) == ["C.UTF-8"]


def test_a_locale_no_substitute_fixes_is_a_400_naming_it():
    # The substitute's load failing too (no UTF-8 locale on the machine) is a
    # 400 naming the locale and skl2onnx's option, never a 500.
    with pytest.raises(ModelRefused) as refused:
        onnx_runner._create(ort, "reviews.onnx", _model("xx_XX.UTF-8"), None, 1 << 30, rewritten=True)
    assert refused.value.STATUS_CODE == 400
    assert "'xx_XX.UTF-8'" in refused.value.message and "'locale'" in refused.value.message


def test_nearest_locale_prefers_the_same_language_and_never_leaves_utf8():
    assert onnx_locale.nearest("C.UTF-8") == "C.UTF-8"
    assert onnx_locale.nearest("xx_XX.ISO-8859-1@euro") in {"C.UTF-8", "C.utf8"}
    assert onnx_locale.nearest("en_US.UTF-8", has=lambda name: name == "en_US.utf8") == "en_US.utf8"
    assert onnx_locale.nearest("en_GB.ISO-8859-1", has=lambda name: name in {"en.UTF-8", "C.UTF-8"}) == "en.UTF-8"
    # A machine with no UTF-8 locale at all: no substitute (the load is then the 400 above).
    assert onnx_locale.nearest("en_US.UTF-8", has=lambda name: name == "C") is None
    assert not onnx_locale.exists("xx_XX.UTF-8") and onnx_locale.exists("C")


def test_missing_locale_reads_onnxruntimes_error():
    text = "Failed to construct locale with name:en_US.UTF-8:locale::facet::_S_create_c_locale name not valid"
    assert onnx_locale.missing_locale(text) == "en_US.UTF-8"
    assert onnx_locale.missing_locale("some other failure") is None
