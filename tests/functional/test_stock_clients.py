"""Stock clients against a real local stack (issue 18, finding 1): tritonclient[http]
and kserve's REST client (protocol v2), from the package registry, in their own
venv (.venv-clients, built by ``make test`` from requirements-clients.txt).

Before /v2, tritonclient reported the server "not live" and "not ready" with no
exception, and metadata and infer failed with a bare 403 INVALID_REQUEST.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.clients.stock_clients import DATATYPES, MODEL
from tests.support.onnx_models import identity_model, multi_io_model
from tests.support.stack import running_stack

PROJECT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = PROJECT / ".venv-clients" / "bin" / "python"

TRITON = [
    "triton live and ready",
    "triton server metadata",
    "triton model metadata",
    "triton model ready",
    "triton output selection and id",
    "triton binary input without headers",
    "triton error: bad shape",
    "triton error: unknown model",
    "triton error: other version",
] + [f"triton infer {d} {kind}" for d in DATATYPES for kind in ("json", "binary")]
KSERVE = ["kserve live and ready", "kserve error message"] + [
    f"kserve infer {d} {kind}" for d in DATATYPES for kind in ("json", "binary") if (d, kind) != ("FP16", "json")
]


def _post(url: str, path: str, body: dict) -> None:
    import urllib.request

    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    assert CLIENTS_PYTHON.exists(), "the stock clients' venv is missing: `make test` builds it (make clients-venv)"
    workdir = tmp_path_factory.mktemp("stock-clients")
    with running_stack(workdir) as endpoints:
        url = endpoints["api_url"]
        models = {MODEL: multi_io_model(), **{f"id-{d}.onnx": identity_model(d) for d in DATATYPES}}
        for name, data in models.items():
            _post(url, "/ingest", {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": name})
        run = subprocess.run(
            [str(CLIENTS_PYTHON), str(PROJECT / "tests" / "clients" / "stock_clients.py"), url],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=workdir,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        yield {line["check"]: line for line in lines}


@pytest.mark.parametrize("check", TRITON + KSERVE)
def test_stock_client(results, check):
    assert check in results, sorted(results)
    assert results[check]["ok"], results[check]["detail"]
