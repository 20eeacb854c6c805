"""docs/models.md's scikit-learn examples, run as written, and the locale case (issue 21).

Each ``<!-- example NAME code -->`` Python block of the page is run in a
fresh folder (converting with skl2onnx in the test); the file ``NAME`` it
writes is ingested through the routes, and the blocks that follow are
checked against the service: ``signature`` (``GET /models/{name}``),
``metadata`` (``GET /v2/models/{name}``), ``request`` + ``answer``
(``POST /predict`` and its ``result``) and ``infer`` + ``infer-answer``
(``POST /v2/models/{name}/infer`` and its ``outputs``). Answers are
compared by structure, shapes, labels and datatypes; floats within 0.01
(they are rounded in the page).

The locale case: skl2onnx's text pipelines carry a ``StringNormalizer``,
for which onnxruntime builds the ``en_US.UTF-8`` locale (or the one the
node names); Lambda, like this machine, has only ``C.UTF-8``. Such a model
loads with the nearest locale that exists, never a 500.
"""

from __future__ import annotations

import base64
import json
import re
import runpy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from chalicelib.runners import onnx_locale
from tests.support.routes import ok, post

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
_BLOCK = re.compile(r"<!-- example (\S+) (\S+) -->\n```(\w+)\n(.*?)```", re.S)


def _examples() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, kind, _, body in _BLOCK.findall(DOC.read_text()):
        found.setdefault(name, {})[kind] = body
    return found


EXAMPLES = _examples()


def _ingest(client: Any, name: str, data: bytes) -> dict[str, Any]:
    body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": name}
    return ok(post(client, "/ingest", body))  # type: ignore[no-any-return]


def _close(actual: Any, documented: Any, where: str = "") -> None:
    """``documented`` is ``actual`` in structure, with floats within 0.01; a dict may show a subset of keys."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), (where, actual)
        for key, value in documented.items():
            assert key in actual, (where, key, actual)
            _close(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list) and len(actual) == len(documented), (where, actual, documented)
        for i, (a, d) in enumerate(zip(actual, documented, strict=True)):
            _close(a, d, f"{where}[{i}]")
    elif isinstance(documented, float):
        close = abs(actual - documented) <= max(0.01, 1e-4 * abs(documented))
        assert isinstance(actual, (int, float)) and close, (where, actual, documented)
    else:
        assert actual == documented, (where, actual, documented)


def test_the_page_has_every_scikit_learn_example():
    assert {"iris.onnx", "iris-tensor.onnx", "diabetes.onnx", "reviews.onnx"} <= set(EXAMPLES)
    for name in ("iris.onnx", "iris-tensor.onnx", "diabetes.onnx", "reviews.onnx"):
        assert {"metadata", "request", "answer"} <= set(EXAMPLES[name]), name


@pytest.mark.parametrize("name", sorted(n for n, kinds in EXAMPLES.items() if "metadata" in kinds))
def test_documented_example_runs_as_written(client, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    code = next(kinds["code"] for kinds in EXAMPLES.values() if "code" in kinds and name in kinds["code"])
    script = tmp_path / "convert.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
    _ingest(client, name, (tmp_path / name).read_bytes())
    shown = EXAMPLES[name]
    if "signature" in shown:
        signature = ok(client.http.get(f"/models/{quote(name)}"))["signature"]
        assert signature == json.loads(shown["signature"])
    assert ok(client.http.get(f"/v2/models/{quote(name)}")) == json.loads(shown["metadata"])
    request = json.loads(shown["request"])
    answer = ok(post(client, "/predict", request))
    _close(answer, json.loads(shown["answer"]), "predict")
    if "infer" in shown:
        inferred = ok(post(client, f"/v2/models/{quote(name)}/infer", json.loads(shown["infer"])))
        _close(inferred, json.loads(shown["infer-answer"]), "infer")


def _text_pipeline(locale: str | None) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["Great film", "GREAT acting", "dull movie", "Dull plot"]
    pipe = make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, ["pos", "pos", "neg", "neg"])
    options: dict[Any, Any] = {LogisticRegression: {"zipmap": False}}
    if locale is not None:
        options[CountVectorizer] = {"locale": locale}
    onx = to_onnx(pipe, initial_types=[("text", StringTensorType([None]))], options=options)
    assert [n.op_type for n in onx.graph.node].count("StringNormalizer") == 1
    return onx.SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "locale",
    [
        None,  # skl2onnx's default: onnxruntime asks for en_US.UTF-8
        "xx_XX.UTF-8",  # a locale no machine has
        "de_DE.ISO-8859-1",  # absent here, and not UTF-8: the nearest UTF-8 one
    ],
)
def test_text_pipeline_naming_a_locale_this_machine_lacks_loads_with_the_nearest(client, locale):
    # Before: 500 PROCESSING_FAILED "Failed to construct locale with name:en_US.UTF-8".
    asked = locale or onnx_locale.DEFAULT_LOCALE
    if onnx_locale.exists(asked):
        pytest.skip(f"this machine has {asked}: nothing to substitute")  # pragma: no cover
    _ingest(client, "reviews.onnx", _text_pipeline(locale))
    body = {"fileId": "r-1", "model": "reviews.onnx", "inputs": {"text": ["great FILM", "so DULL"]}}
    result = ok(post(client, "/predict", body))["result"]
    assert result["label"]["data"] == ["pos", "neg"]  # lowercased: "FILM" and "DULL" were seen as words
    assert result["probabilities"]["shape"] == [2, 2]
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["dull"]}]}
    outputs = ok(post(client, "/v2/models/reviews.onnx/infer", v2))["outputs"]
    assert outputs[0] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["neg"]}
