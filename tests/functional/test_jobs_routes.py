"""Batch jobs through chalice.test.Client, a real moto (S3 and SQS) and the local poller."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import uuid

import numpy as np
import pytest

from devstack.jobs import Poller, create_queues
from tests.support.onnx_models import identity_model, small_cnn
from tests.support.routes import error, ok, post

ROWS = 50


@pytest.fixture
def queues(moto_server, bucket, monkeypatch):
    import boto3

    from chalicelib import edge

    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server.endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_server.endpoint)
    found = create_queues(sqs, max_receive_count=2, visibility_timeout=1, name=f"jobs-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("JOB_QUEUE_URL", found["job_queue_url"])
    monkeypatch.setenv("JOB_MAX_RECEIVE_COUNT", "2")
    edge.reset()
    yield {**found, "sqs": sqs}


@pytest.fixture
def poller(queues, client):
    import app

    return Poller(app.app, queues["job_queue_url"], queues["job_queue_arn"], batch_size=10, wait=0)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def ingest(client, filename: str, data: bytes):
    body = {"filename": filename, "data": base64.b64encode(data).decode(), "encoding": "base64"}
    return ok(post(client, "/ingest", body))


def per_row(x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(small_cnn(), providers=["CPUExecutionProvider"])
    rows = [session.run(None, {"x": x[i : i + 1]}) for i in range(len(x))]
    return {"logits": np.concatenate([r[0] for r in rows]), "features": np.concatenate([r[1] for r in rows])}


def drain(poller: Poller, seconds: float = 30.0) -> None:
    """Poll until the queue holds nothing, visible or in flight. Bounded in
    time, not in polls: a failed block's message is invisible for the
    visibility timeout (1 s here), however fast the empty polls come back."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if poller.poll_once() == 0:
            attrs = poller.sqs.get_queue_attributes(QueueUrl=poller.queue_url, AttributeNames=["All"])["Attributes"]
            if int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0:
                return
            time.sleep(0.05)
    raise AssertionError("queue did not drain")


def status(client, job_id: str) -> dict:
    return ok(client.http.get(f"/jobs/{job_id}"))


@pytest.fixture
def cnn_input(client):
    ingest(client, "cnn.onnx", small_cnn())
    x = np.random.default_rng(1).standard_normal((ROWS, 1, 8, 8)).astype(np.float32)
    ingest(client, "inputs/rows.npy", npy(x))
    return x


def test_a_job_splits_runs_and_assembles_outputs_equal_to_per_row_inference(
    client, poller, cnn_input, s3_client, bucket
):
    created = post(client, "/jobs", {"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 8})
    assert created.status_code == 202, created.body
    body = json.loads(created.body)
    assert body["state"] == "pending" and body["blocks"] == 7 and body["statusUrl"] == f"/jobs/{body['jobId']}"
    assert status(client, body["jobId"])["state"] == "pending"
    drain(poller)
    done = status(client, body["jobId"])
    assert done["state"] == "succeeded", done
    assert done["blocks"] == {"total": 7, "done": 7, "failed": 0, "pending": 0}
    assert done["rows"] == {"total": ROWS, "done": ROWS}
    assert done["startedAt"] and done["finishedAt"] and done["errors"] == []
    expected = per_row(cnn_input)
    assert set(done["results"]) == {"logits", "features"}
    for name, result in done["results"].items():
        on_efs = np.load(result["efsPath"])
        np.testing.assert_allclose(on_efs, expected[name], rtol=1e-5, atol=1e-6)
        archived = s3_client.get_object(Bucket=bucket, Key=result["s3Key"])["Body"].read()
        assert np.array_equal(np.load(io.BytesIO(archived)), on_efs)
        assert result["url"] and result["shape"] == list(expected[name].shape)


def test_a_duplicated_message_changes_nothing_twice(client, poller, queues, cnn_input):
    job = json.loads(post(client, "/jobs", {"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 25}).body)
    drain(poller)
    first = status(client, job["jobId"])
    block = os.path.join(os.environ["EFS_ROOT"], "jobs", job["jobId"], "blocks", "0.npz")
    before = os.stat(block)
    queues["sqs"].send_message(
        QueueUrl=queues["job_queue_url"], MessageBody=json.dumps({"jobId": job["jobId"], "block": 0})
    )
    drain(poller)
    again = status(client, job["jobId"])
    assert again["blocks"] == first["blocks"] and again["rows"] == first["rows"]
    assert again["finishedAt"] == first["finishedAt"]
    after = os.stat(block)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_block_that_always_fails_ends_in_the_dlq_and_fails_the_job_naming_it(client, poller, queues):
    ingest(client, "cnn.onnx", small_cnn())
    good = np.zeros((3, 1, 8, 8), np.float32)
    ingest(client, "inputs/day1-000.npy", npy(good))
    ingest(client, "inputs/day1-001.npy", npy(np.zeros((3, 1, 5, 5), np.float32)))  # the model wants 8x8
    ingest(client, "inputs/day1-002.npy", npy(good))
    ingest(client, "inputs/day2-000.npy", npy(good))
    job = json.loads(post(client, "/jobs", {"model": "cnn.onnx", "inputPrefix": "inputs/day1-"}).body)
    assert job["blocks"] == 3
    for _ in range(4):
        drain(poller)
    failed = status(client, job["jobId"])
    assert failed["state"] == "failed", failed
    assert failed["blocks"] == {"total": 3, "done": 2, "failed": 1, "pending": 0}
    (err,) = failed["errors"]
    assert err["block"] == 1 and err["input"] == "inputs/day1-001.npy" and err["error"] == "INVALID_REQUEST"
    assert err["attempts"] == 2 and "results" not in failed
    dlq = queues["sqs"].receive_message(QueueUrl=queues["job_dlq_url"], MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["block"] for m in dlq] == [1]
    for kept in (0, 2):
        assert os.path.exists(os.path.join(os.environ["EFS_ROOT"], "jobs", job["jobId"], "blocks", f"{kept}.npz"))


def test_cancel_skips_blocks_not_yet_started(client, poller, cnn_input):
    job = json.loads(post(client, "/jobs", {"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 5}).body)
    poller.batch_size = 1
    assert poller.poll_once() == 1
    cancelled = ok(client.http.delete(f"/jobs/{job['jobId']}"))
    assert cancelled["state"] == "cancelled" and cancelled["cancelledAt"]
    drain(poller)
    final = status(client, job["jobId"])
    assert final["state"] == "cancelled" and final["blocks"]["done"] == 1 and "results" not in final


def test_list_pages_with_an_opaque_next(client, poller, cnn_input):
    ids = [
        json.loads(post(client, "/jobs", {"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 50}).body)[
            "jobId"
        ]
        for _ in range(3)
    ]
    first = ok(client.http.get("/jobs?limit=2"))
    assert len(first["jobs"]) == 2 and first["next"]
    rest = ok(client.http.get(f"/jobs?limit=2&next={first['next']}"))
    assert rest["next"] is None
    assert sorted(j["jobId"] for j in first["jobs"] + rest["jobs"]) == sorted(ids)
    error(client.http.get("/jobs?limit=0"), 400, "INVALID_REQUEST")
    error(client.http.get("/jobs?next=bogus"), 400, "INVALID_REQUEST")


def test_bad_job_requests_get_documented_errors(client, queues, cnn_input):
    cases = [
        ({"input": "inputs/rows.npy"}, 400, "INVALID_REQUEST"),
        ({"model": "cnn.onnx"}, 400, "INVALID_REQUEST"),
        ({"model": "cnn.onnx", "input": "inputs/rows.npy", "inputPrefix": "inputs/r"}, 400, "INVALID_REQUEST"),
        ({"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 0}, 400, "INVALID_REQUEST"),
        ({"model": "cnn.onnx", "input": "inputs/rows.npy", "bogus": 1}, 400, "INVALID_REQUEST"),
        ({"model": "missing.onnx", "input": "inputs/rows.npy"}, 404, "NOT_FOUND"),
        ({"model": "cnn.onnx", "input": "inputs/none.npy"}, 404, "NOT_FOUND"),
        ({"model": "cnn.onnx", "inputPrefix": "inputs/zzz"}, 404, "NOT_FOUND"),
        ({"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 10**7}, 400, "INVALID_REQUEST"),
    ]
    for body, code, name in cases:
        error(post(client, "/jobs", body), code, name)
    error(client.http.get("/jobs/20260101T000000Z-000000000000"), 404, "NOT_FOUND")
    error(client.http.get("/jobs/..%2F..%2Fetc"), 404, "NOT_FOUND")


def test_a_block_whose_outputs_exceed_max_output_elements_fails_naming_the_setting(
    client, poller, cnn_input, monkeypatch
):
    from chalicelib import edge

    # 10 rows x (3 logits + 4 features) = 70 output values per block, over a limit of 50.
    monkeypatch.setenv("MAX_OUTPUT_ELEMENTS", "50")
    edge.reset()
    job = json.loads(post(client, "/jobs", {"model": "cnn.onnx", "input": "inputs/rows.npy", "batchSize": 10}).body)
    for _ in range(4):
        drain(poller)
    failed = status(client, job["jobId"])
    assert failed["state"] == "failed" and failed["blocks"]["failed"] == 5, failed
    assert all("MAX_OUTPUT_ELEMENTS" in e["message"] for e in failed["errors"])


def test_an_assembly_that_always_fails_ends_the_job_failed_with_the_reason(client, poller, queues):
    # Every block runs, but their outputs cannot be joined (3 columns, then 5): each assembly attempt fails.
    ingest(client, "id.onnx", identity_model("FP32", ("n", "m")))
    ingest(client, "inputs/cols-0.npy", npy(np.zeros((2, 3), np.float32)))
    ingest(client, "inputs/cols-1.npy", npy(np.ones((2, 5), np.float32)))
    job = json.loads(post(client, "/jobs", {"model": "id.onnx", "inputPrefix": "inputs/cols-"}).body)
    assert job["blocks"] == 2
    for _ in range(4):
        drain(poller)
    failed = status(client, job["jobId"])
    assert failed["state"] == "failed", failed
    assert failed["blocks"] == {"total": 2, "done": 2, "failed": 0, "pending": 0}
    (err,) = failed["errors"]
    assert err["block"] is None and err["stage"] == "assembly" and err["attempts"] == 2, err
    assert err["error"] == "INVALID_REQUEST" and "cannot be joined" in err["message"], err
    assert failed["finishedAt"] == err["at"] and "results" not in failed
    dlq = queues["sqs"].receive_message(QueueUrl=queues["job_dlq_url"], MaxNumberOfMessages=10)["Messages"]
    assert len(dlq) == 1  # the message that assembled, after its attempts
