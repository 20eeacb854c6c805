"""`python -m efsml_client jobs ...` against a real local stack's batch jobs (docs/jobs.md, issue 20).

The jobs routes come with issue 20 (branch h-G); until the app has them this
module does not run (the skip says so), and it runs by itself once they are
merged: nothing here fakes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app import app
from tests.support.efsml_cli import cli, error_line
from tests.support.onnx_models import Mlp
from tests.support.stack import running_stack

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    "/jobs" not in app.routes, reason="the app has no /jobs routes yet (issue 20, h-G): runs once they are merged"
)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("client-jobs-stack")) as endpoints:
        yield endpoints["api_url"]


def test_submit_wait_download_status_list_cancel(url, tmp_path):
    model = Mlp.random(seed=5)
    (tmp_path / "jobs-mlp.onnx").write_bytes(model.onnx_bytes())
    rows = np.random.default_rng(1).standard_normal((100, 4)).astype(np.float32)
    np.save(tmp_path / "job-rows.npy", rows)
    assert cli(url, "push", tmp_path / "jobs-mlp.onnx")[0] == 0
    assert cli(url, "push", "--input", tmp_path / "job-rows.npy")[0] == 0

    results = tmp_path / "results"
    code, status, stderr = cli(
        url, "jobs", "submit", "jobs-mlp.onnx", "inputs/job-rows.npy", "--batch-size", 10,
        "--wait", 90, "--download", results, "--progress",
    )  # fmt: skip
    assert code == 0 and status["state"] == "succeeded", (status, stderr)
    assert status["blocks"]["total"] == 10 and status["rows"] == {"total": 100, "done": 100}
    (result,) = status["results"].values()
    got = np.load(result["downloaded"])
    np.testing.assert_allclose(got, ort.InferenceSession(model.onnx_bytes()).run(None, {"x": rows})[0], rtol=1e-6)
    assert Path(result["downloaded"]).parent == results and "100%" in stderr  # the download's bar

    job_id = status["jobId"]
    code, again, _ = cli(url, "jobs", "status", job_id)
    assert code == 0 and again["state"] == "succeeded"
    code, waited, _ = cli(url, "jobs", "wait", job_id, "--wait", 5)
    assert code == 0 and waited["jobId"] == job_id
    code, listed, _ = cli(url, "jobs", "list", "--limit", 1)
    assert code == 0 and job_id in [j["jobId"] for j in listed]
    # A finished job is left as it is by a cancel (docs/jobs.md).
    code, cancelled, _ = cli(url, "jobs", "cancel", job_id)
    assert code == 0 and cancelled["state"] == "succeeded"


def test_unknown_job_and_bad_submit_are_the_services_errors(url):
    code, _, stderr = cli(url, "jobs", "wait", "20990101T000000Z-000000000000", "--wait", 5)
    assert code == 1 and error_line(stderr)["status"] == 404
    code, _, stderr = cli(url, "jobs", "submit", "nope.onnx", "inputs/none.npy")
    assert code == 1 and error_line(stderr)["status"] in (400, 404)
