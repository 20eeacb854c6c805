"""Batch jobs over HTTP against a real local stack (`make local`: moto S3 + SQS, chalice local, 2 job workers).

Only the documented routes: ingest, POST /jobs, GET /jobs/{id} until done,
download the presigned results, compare with per-row /predict.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests

from tests.support.jobs import api, ingest, local_stack, npy
from tests.support.onnx_models import small_cnn

ROWS = 1000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("jobs-stack"), JOB_WORKERS="2", JOB_VISIBILITY_TIMEOUT="3") as (
        endpoints,
        _,
        proc,
    ):
        yield endpoints, proc


def test_a_1000_row_job_completes_and_equals_per_row_inference(stack):
    endpoints, proc = stack
    from devstack.processes import children

    # Two workers besides moto: the stack runs them.
    assert len(children(proc.pid)) >= 3
    ingest(endpoints, "cnn.onnx", small_cnn())
    x = np.random.default_rng(5).standard_normal((ROWS, 1, 8, 8)).astype(np.float32)
    ingest(endpoints, "inputs/images.npy", npy(x))
    status, job = api(endpoints, "POST", "/jobs", {"model": "cnn.onnx", "input": "inputs/images.npy", "batchSize": 40})
    assert status == 202 and job["blocks"] == 25 and job["state"] == "pending", job
    seen, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        status, doc = api(endpoints, "GET", job["statusUrl"])
        assert status == 200, doc
        seen.append((doc["blocks"]["done"], doc["rows"]["done"]))
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert doc["state"] == "succeeded", doc
    assert seen == sorted(seen), "progress went backwards"
    assert doc["rows"] == {"total": ROWS, "done": ROWS} and doc["blocks"]["failed"] == 0
    listed = api(endpoints, "GET", "/jobs?limit=5")[1]
    assert job["jobId"] in [j["jobId"] for j in listed["jobs"]]
    # Per-row inference through the documented /predict, nothing stored.
    expected = {"logits": [], "features": []}
    for i in range(ROWS):
        status, one = api(
            endpoints,
            "POST",
            "/predict",
            {"fileId": f"row{i}", "model": "cnn.onnx", "inputs": {"x": x[i : i + 1].tolist()}, "store": False},
        )
        assert status == 200, one
        for name in expected:
            expected[name].append(
                one["result"][name]["data"] if isinstance(one["result"][name], dict) else one["result"][name]
            )
    for name, result in doc["results"].items():
        downloaded = requests.get(result["url"], timeout=30)
        assert downloaded.status_code == 200
        got = np.load(io.BytesIO(downloaded.content))
        assert got.shape == (ROWS, *np.asarray(expected[name][0]).shape[-1:])
        want = np.concatenate([np.asarray(e, np.float32).reshape(1, -1) for e in expected[name]])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert got.tobytes() == open(result["efsPath"], "rb").read()[-got.nbytes :]
