"""Batch job faults over HTTP against a local stack whose job workers the tests start and kill.

* a worker SIGKILLed mid-block: the block comes back after the visibility
  timeout, another worker redoes it, and it is counted once;
* a block that always fails: retried maxReceiveCount times, then in the
  DLQ; the job is failed naming the block, and the other blocks' results stay;
* a worker SIGKILLed on a block's last attempt (it records nothing as it
  dies): the job still ends failed naming the block, once that attempt is
  older than JOB_ATTEMPT_TIMEOUT_SECONDS;
* a worker killed on every delivery of a block, before the handler runs:
  the message reaches the DLQ, whose poller (``fail_dead_blocks``) fails the
  block on the job, once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from devstack.processes import PROJECT_DIR
from tests.support.jobs import api, ingest, local_stack, npy
from tests.support.onnx_models import Mlp, small_cnn

VISIBILITY = 3
ATTEMPT_TIMEOUT = 15  # the API's JOB_ATTEMPT_TIMEOUT_SECONDS: a killed last attempt counts as failed after it
MLP = Mlp.random(n_in=256, hidden=2048, n_out=4, seed=11)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {
        "JOB_WORKERS": "0",
        "JOB_VISIBILITY_TIMEOUT": str(VISIBILITY),
        "JOB_MAX_RECEIVE_COUNT": "2",
        "JOB_ATTEMPT_TIMEOUT_SECONDS": str(ATTEMPT_TIMEOUT),
    }
    with local_stack(tmp_path_factory.mktemp("jobs-faults"), **env) as (endpoints, endpoints_file, _):
        yield endpoints, endpoints_file


class Worker:
    """One ``python -m devstack.jobs`` process whose log lines the test reads."""

    def __init__(self, endpoints_file: Path, *args: str, module: str = "devstack.jobs") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--endpoints", str(endpoints_file), *args],
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "JOB_MAX_RECEIVE_COUNT": "2"},
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line)["message"])
            except (ValueError, KeyError, TypeError):
                self.lines.append(line.strip())

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            time.sleep(0.005)
        raise AssertionError(f"worker never logged {text!r}: {self.lines[-5:]}")

    def blocks(self, outcome: str) -> list[int]:
        return [
            int(line.split(" block ")[1].split(":")[0])
            for line in self.lines
            if line.endswith(outcome) or f": {outcome} (" in line
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.reader.join(5)


def put_input(endpoints, name, data):
    """A large input lands through S3 (make s3-put) and the local S3 event."""
    import boto3

    boto3.client("s3", endpoint_url=endpoints["s3_endpoint"]).put_object(
        Bucket=endpoints["bucket"], Key=f"inputs/{name}", Body=data
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = api(endpoints, "GET", f"/inputs/{name}")
        if status == 200 and body.get("status", body.get("state")) in (None, "ready") and body.get("sizeBytes"):
            return
        time.sleep(0.3)
    raise AssertionError(f"input {name} never landed: {body}")


def server_log_line(endpoints_file: Path, text: str, timeout: float) -> str:
    """The first line of the stack's log (its API, S3 watcher and DLQ poller) that contains ``text``."""
    log = endpoints_file.parent.parent / "server.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if text in line:
                try:
                    return str(json.loads(line)["message"])
                except (ValueError, KeyError, TypeError):
                    return line.strip()
        time.sleep(0.2)
    raise AssertionError(f"the stack never logged {text!r}")


def dlq_depth(endpoints) -> int:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoints["s3_endpoint"])
    attrs = sqs.get_queue_attributes(QueueUrl=endpoints["job_dlq_url"], AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_state(endpoints, job_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, doc = api(endpoints, "GET", f"/jobs/{job_id}")
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"job still {doc['state']}: {doc}")


def mlp_job(endpoints, name: str, rows: int, seed: int) -> tuple[np.ndarray, dict]:
    """A job of the MLP over ``rows`` random rows stored as ``inputs/<name>``, 1000 rows per block."""
    ingest(endpoints, "mlp.onnx", MLP.onnx_bytes())
    x = np.random.default_rng(seed).standard_normal((rows, 256)).astype(np.float32)
    put_input(endpoints, name, npy(x))
    status, job = api(endpoints, "POST", "/jobs", {"model": "mlp.onnx", "input": f"inputs/{name}", "batchSize": 1000})
    assert status == 202, job
    return x, job


def test_a_worker_killed_mid_block_is_redone_and_counted_once(stack):
    endpoints, endpoints_file = stack
    x, job = mlp_job(endpoints, "kill.npy", rows=4000, seed=3)
    first = Worker(endpoints_file)
    try:
        started = first.wait_for(f"job {job['jobId']} block ")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.stop()
    killed = int(started.split(" block ")[1].split(":")[0])
    root = Path(endpoints["efs_root"]) / "jobs" / job["jobId"]
    assert not (root / "blocks" / f"{killed}.npz").exists(), "the kill came after the block finished"
    second = Worker(endpoints_file)
    try:
        doc = wait_state(endpoints, job["jobId"])
    finally:
        second.stop()
    assert doc["state"] == "succeeded", doc
    assert doc["blocks"] == {"total": 4, "done": 4, "failed": 0, "pending": 0}
    assert doc["rows"] == {"total": 4000, "done": 4000}
    assert killed in second.blocks("ran"), second.lines  # redone by the other worker, after the visibility timeout
    assert sorted(first.blocks("ran") + second.blocks("ran")) == [0, 1, 2, 3]  # each block ran to the end once
    got = np.load(io.BytesIO(requests.get(doc["results"]["y"]["url"], timeout=30).content))
    np.testing.assert_allclose(got, MLP.reference(x), rtol=1e-4, atol=1e-3)


def test_a_block_that_always_fails_goes_to_the_dlq_and_fails_the_job(stack):
    endpoints, endpoints_file = stack
    ingest(endpoints, "cnn.onnx", small_cnn())
    for name, shape in (("b-0.npy", (4, 1, 8, 8)), ("b-1.npy", (4, 1, 6, 6)), ("b-2.npy", (4, 1, 8, 8))):
        ingest(endpoints, f"inputs/{name}", npy(np.ones(shape, np.float32)))
    status, job = api(endpoints, "POST", "/jobs", {"model": "cnn.onnx", "inputPrefix": "inputs/b-"})
    assert status == 202 and job["blocks"] == 3, job
    worker = Worker(endpoints_file)
    try:
        doc = wait_state(endpoints, job["jobId"], timeout=60)
        # SQS moves the message once a receive finds it past maxReceiveCount
        # (the next poll after its last visibility timeout), and the stack's
        # DLQ poller hands it to fail_dead_blocks: the block is already failed.
        dead = server_log_line(endpoints_file, f"job {job['jobId']} block 1: dead-lettered", 4 * VISIBILITY + 10)
    finally:
        worker.stop()
    assert doc["state"] == "failed", doc
    assert doc["blocks"] == {"total": 3, "done": 2, "failed": 1, "pending": 0}
    (err,) = doc["errors"]
    assert err["block"] == 1 and err["input"] == "inputs/b-1.npy" and err["attempts"] == 2, err
    assert "8" in err["message"] and err["error"] == "INVALID_REQUEST"
    assert dead.endswith("dead-lettered, unchanged"), dead
    assert api(endpoints, "GET", f"/jobs/{job['jobId']}")[1]["errors"] == doc["errors"]
    assert dlq_depth(endpoints) == 0  # consumed: the job says what happened
    root = Path(endpoints["efs_root"]) / "jobs" / job["jobId"] / "blocks"
    assert sorted(p.name for p in root.iterdir() if p.suffix == ".npz") == ["0.npz", "2.npz"]


def _kill(worker: Worker) -> None:
    os.kill(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait(10)
    worker.stop()


def test_a_worker_killed_on_the_last_attempt_fails_the_job_naming_the_block(stack):
    endpoints, endpoints_file = stack
    _, job = mlp_job(endpoints, "last.npy", rows=2000, seed=5)
    prefix = f"job {job['jobId']} block "
    first = Worker(endpoints_file)
    try:
        started = first.wait_for(prefix)  # attempt 1 of one block
    finally:
        _kill(first)
    killed = int(started.split(" block ")[1].split(":")[0])
    second = Worker(endpoints_file)
    try:
        second.wait_for(f"{prefix}{killed}: started", timeout=60)  # attempt 2 (JOB_MAX_RECEIVE_COUNT): the last
    finally:
        _kill(second)
    root = Path(endpoints["efs_root"]) / "jobs" / job["jobId"]
    assert not (root / "blocks" / f"{killed}.npz").exists(), "the kill came after the block finished"
    _, running = api(endpoints, "GET", f"/jobs/{job['jobId']}")
    assert running["state"] == "running", running  # within the bound, the attempt may still be running
    third = Worker(endpoints_file)  # runs the other block if the second did not
    try:
        doc = wait_state(endpoints, job["jobId"], timeout=ATTEMPT_TIMEOUT + 60)
    finally:
        third.stop()
    assert doc["state"] == "failed", doc
    assert doc["blocks"] == {"total": 2, "done": 1, "failed": 1, "pending": 0}
    (err,) = doc["errors"]
    assert err["block"] == killed and err["rows"] == [killed * 1000, killed * 1000 + 1000], err
    assert "worker stopped during its last attempt" in err["message"] and err["attempts"] == 2, err
    assert doc["finishedAt"] and "results" not in doc
    assert (root / "blocks" / f"{1 - killed}.npz").exists()  # the other block's result is kept
    assert killed not in third.blocks("ran")  # SQS does not run it a third time


def test_a_worker_killed_on_every_delivery_before_the_handler_runs_fails_the_block_through_the_dlq(stack):
    import boto3

    endpoints, endpoints_file = stack
    ingest(endpoints, "cnn.onnx", small_cnn())
    for name in ("d-0.npy", "d-1.npy"):
        ingest(endpoints, f"inputs/{name}", npy(np.ones((4, 1, 8, 8), np.float32)))
    status, job = api(endpoints, "POST", "/jobs", {"model": "cnn.onnx", "inputPrefix": "inputs/d-"})
    assert status == 202 and job["blocks"] == 2, job
    root = Path(endpoints["efs_root"]) / "jobs" / job["jobId"]
    deaths = 0
    deadline = time.monotonic() + 6 * VISIBILITY + 60
    doc: dict = {}
    while time.monotonic() < deadline:
        # A fresh "Lambda" for every delivery: it runs block 0, and dies on each delivery of block 1.
        worker = Worker(endpoints_file, "--doomed", "1", module="tests.support.dying_worker")
        try:
            while worker.proc.poll() is None and time.monotonic() < deadline:
                doc = api(endpoints, "GET", f"/jobs/{job['jobId']}")[1]
                if doc["state"] != "running" and doc["state"] != "pending":
                    break
                time.sleep(0.3)
        finally:
            if worker.proc.poll() is not None:
                deaths += 1
            worker.stop()
        if doc.get("state") not in ("running", "pending"):
            break
        assert not any((root / d).exists() for d in ("errors", "failed", "last-attempt")), "the dying worker recorded"
    assert doc["state"] == "failed", doc
    assert deaths == 2  # JOB_MAX_RECEIVE_COUNT deliveries, then the DLQ
    assert doc["blocks"] == {"total": 2, "done": 1, "failed": 1, "pending": 0}
    (err,) = doc["errors"]
    assert err["block"] == 1 and err["input"] == "inputs/d-1.npy" and err["attempts"] == 2, err
    assert "every delivery of block 1 ended without an answer: the Lambda timed out or was killed" in err["message"]
    assert doc["finishedAt"] == err["at"] and "results" not in doc
    assert (root / "blocks" / "0.npz").exists()  # the other block's result is kept
    assert dlq_depth(endpoints) == 0
    # The same dead letter again (a duplicate), and one of the done block: nothing changes.
    sqs = boto3.client("sqs", endpoint_url=endpoints["s3_endpoint"])
    for block in (1, 0):
        sqs.send_message(
            QueueUrl=endpoints["job_dlq_url"], MessageBody=json.dumps({"jobId": job["jobId"], "block": block})
        )
    server_log_line(endpoints_file, f"job {job['jobId']} block 0: dead-lettered, unchanged", 30)
    server_log_line(endpoints_file, f"job {job['jobId']} block 1: dead-lettered, unchanged", 30)
    assert api(endpoints, "GET", f"/jobs/{job['jobId']}")[1] == doc
