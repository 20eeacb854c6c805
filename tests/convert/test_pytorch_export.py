"""docs/models.md's PyTorch example, exported with both exporters, ingested and run (``make test-convert``).

torch is large (about 700 MB), so it lives in a venv of its own,
``.venv-convert`` (``requirements-convert.txt``), which ``make test-convert``
builds and names in ``CONVERT_PYTHON``. The page's PyTorch block runs there
as written, in a fresh folder, followed by a few lines that save torch's own
answer for a batch of 3; this process (the service's venv) ingests both
files through the routes and checks their signatures and answers.
Without ``CONVERT_PYTHON`` (``make test``, CI) the test is skipped, saying so.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.routes import ok, post

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"
CONVERT_PYTHON = os.environ.get("CONVERT_PYTHON")
pytestmark = pytest.mark.skipif(
    not CONVERT_PYTHON, reason="the PyTorch export examples run in `make test-convert` (torch is not in this venv)"
)
X3 = [[0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]
# Appended to the page's block: torch's own answer for the batch the service is sent.
_REFERENCE = f"""
import numpy as np
with torch.no_grad():
    np.save("reference.npy", model(torch.tensor({X3!r})).numpy())
"""


def _torch_block() -> str:
    match = re.search(r"<!-- example mlp\.onnx torch-code -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None, "docs/models.md lost its PyTorch example"
    return match.group(1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torch-export")
    (folder / "export.py").write_text(_torch_block() + _REFERENCE)
    run = subprocess.run(
        [str(CONVERT_PYTHON), "export.py"], cwd=folder, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return folder


@pytest.mark.parametrize("name", ["mlp-script.onnx", "mlp-dynamo.onnx"])
def test_pytorch_export_ingests_and_runs_any_batch(client, exported, name):
    files = sorted(p.name for p in exported.iterdir())
    assert not any(f.endswith(".data") for f in files), files  # the weights are inside the .onnx
    data = (exported / name).read_bytes()
    body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": name}
    ok(post(client, "/ingest", body))
    meta = ok(client.http.get(f"/v2/models/{name}"))
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("x", "FP32", [-1, 4])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [("y", "FP32", [-1, 3])]
    result = ok(post(client, "/predict", {"fileId": "mlp-1", "model": name, "inputs": {"x": X3}}))["result"]
    assert result["y"]["shape"] == [3, 3] and result["y"]["dtype"] == "float32"
    np.testing.assert_allclose(np.array(result["y"]["data"]), np.load(exported / "reference.npy"), rtol=1e-4, atol=1e-5)
