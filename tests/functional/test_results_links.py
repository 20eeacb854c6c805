"""Results anyone with the API can read (presigned GET URLs), "store": false, and retention."""

from __future__ import annotations

import base64
import json
import os
import time

import numpy as np
import requests

from chalicelib import edge
from tests.support.jobs import plan_doc
from tests.support.onnx_models import Mlp
from tests.support.routes import error, ok, post

MLP = Mlp.random(seed=3)
X = np.random.default_rng(7).standard_normal((2, 4)).astype(np.float32)


def ingest_mlp(client) -> None:
    body = {"filename": "mlp.onnx", "data": base64.b64encode(MLP.onnx_bytes()).decode(), "encoding": "base64"}
    ok(post(client, "/ingest", body))


def predict(client, file_id: str, **extra):
    return post(client, "/predict", {"fileId": file_id, "model": "mlp.onnx", "inputs": {"x": X.tolist()}, **extra})


def test_an_answer_by_reference_carries_a_presigned_url_that_downloads_it(client, bucket, monkeypatch):
    ingest_mlp(client)
    small = ok(predict(client, "inline"))
    assert "url" not in small  # an inline answer is unchanged
    monkeypatch.setenv("MAX_RESPONSE_BYTES", "200")
    edge.reset()
    body = ok(predict(client, "big"))
    assert body["resultByReference"] is True and body["url"] and body["expiresIn"] == 3600
    downloaded = requests.get(body["url"], timeout=10)
    assert downloaded.status_code == 200
    assert downloaded.content == open(body["efsPath"], "rb").read()
    assert json.loads(downloaded.content)["result"] == small["result"]


def test_get_results_hands_out_a_url_for_a_stored_result(client, bucket):
    ingest_mlp(client)
    ok(predict(client, "r1"))
    link = ok(client.http.get("/results/r1"))
    assert link["s3Key"] == "outputs/r1.result" and link["sizeBytes"] > 0
    assert requests.get(link["url"], timeout=10).content == open(link["efsPath"], "rb").read()
    error(client.http.get("/results/nothing-here"), 404, "NOT_FOUND")
    error(client.http.get("/results/.hidden"), 400, "INVALID_REQUEST")


def test_store_false_answers_without_storing_or_archiving(client, bucket, s3_client, efs_root, monkeypatch):
    ingest_mlp(client)
    body = ok(predict(client, "ephemeral", store=False))
    assert body["result"] is not None and body["efsPath"] is None and body["s3Key"] is None
    assert not os.path.exists(efs_root / "outputs" / "ephemeral.result")
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="outputs/").get("KeyCount", 0) == 0
    error(client.http.get("/results/ephemeral"), 404, "NOT_FOUND")
    error(predict(client, "x", store="no"), 400, "INVALID_REQUEST")
    # Too big to answer inline, and told not to store: a clear 400, nothing stored.
    monkeypatch.setenv("MAX_RESPONSE_BYTES", "200")
    edge.reset()
    assert "store" in error(predict(client, "big", store=False), 400, "INVALID_REQUEST")["message"]
    assert not os.path.exists(efs_root / "outputs" / "big.result")


def test_retention_expires_old_results_and_finished_jobs_only(client, efs_root, monkeypatch):
    from chalicelib import retention
    from chalicelib.edge import get_settings, get_store
    from chalicelib.jobs.state import JobFiles, iso

    ingest_mlp(client)
    ok(predict(client, "old"))
    files = JobFiles(str(efs_root))
    for job_id, finished in (("20260101T000000Z-00000000000a", True), ("20260101T000000Z-00000000000b", False)):
        files.write_json(job_id, ("job.json",), plan_doc(job_id, 1, iso(time.time()), model="models/mlp.onnx"))
        if finished:
            files.write_json(job_id, ("results.json",), {"outputs": {}, "finishedAt": iso(time.time())})
    store, settings = get_store(), get_settings()
    assert retention.expire(store, settings) == {"outputs": 0, "jobs": 0}  # all younger than 30 days
    later = time.time() + 31 * 86400
    assert retention.expire(store, settings, now=later) == {"outputs": 1, "jobs": 1}
    assert not os.path.exists(efs_root / "outputs" / "old.result")
    assert files.job_ids() == ["20260101T000000Z-00000000000b"]  # still running: kept
    monkeypatch.setenv("RESULT_RETENTION_DAYS", "0")
    edge.reset()
    ok(predict(client, "kept"))
    assert retention.expire(get_store(), get_settings(), now=later + 10**9) == {"outputs": 0, "jobs": 0}
    # The hourly sweep runs it beside the debris reclaim.
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    payload = client.lambda_.invoke("reclaim_debris", event).payload
    assert payload["expired"] == {"outputs": 0, "jobs": 0}
