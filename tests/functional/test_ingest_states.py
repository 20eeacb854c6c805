"""Async key ingest and ingest states through the routes and the S3-event
handler (chalice.test.Client, the real moto server, a fault proxy for S3 failures)."""

import json
from urllib.parse import quote

import pytest

from tests.support.faultproxy import Fault
from tests.support.routes import error, ok, post


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def small_sync(bucket, monkeypatch):
    """SYNC_INGEST_MAX_BYTES of 1 KiB, MAX_INGEST_BYTES of 64 KiB."""
    monkeypatch.setenv("SYNC_INGEST_MAX_BYTES", "1024")
    monkeypatch.setenv("MAX_INGEST_BYTES", "65536")
    _reset()
    yield bucket
    _reset()


@pytest.fixture
def failing_gets(small_sync, s3_proxy):
    """S3 behind a proxy whose object GETs fail (500) while ``failing`` is set."""
    s3_proxy.failing = True
    s3_proxy.rule = lambda method, path, n: (
        Fault(status=500, code="InternalError") if method == "GET" and s3_proxy.failing else None
    )
    return s3_proxy


def deliver(client, bucket, key):
    """The event S3 sends for ``key`` (ObjectCreated), handed to the real handler."""
    event = client.events.generate_s3_event(bucket=bucket, key=quote(key))
    return client.lambda_.invoke("on_object_created", event)


def failed_post(client, body):
    """POST /ingest failing on S3 (a 5xx: PROCESSING_FAILED, or TIMEOUT when the
    request's deadline cut the client's retries short)."""
    resp = post(client, "/ingest", body)
    assert resp.status_code in (500, 504), resp.body
    failure = json.loads(resp.body)
    assert failure["error"] in ("PROCESSING_FAILED", "TIMEOUT")
    return failure


def accepted(client, key):
    resp = post(client, "/ingest", {"key": key})
    assert resp.status_code == 202, resp.body
    return json.loads(resp.body)


def test_large_key_is_accepted_pending_then_ready_after_the_event(client, small_sync, s3_client, efs_root):
    key = "models/grand modèle.bin"
    s3_client.put_object(
        Bucket=small_sync,
        Key=key,
        Body=b"M" * 4096,
        ContentType="application/octet-stream",
        Metadata={"owner": "team-a"},
    )
    body = accepted(client, key)
    assert body["status"] == "accepted" and body["statusUrl"] == "/models/grand%20mod%C3%A8le.bin"
    assert body["key"] == key and body["name"] == "grand modèle.bin" and body["sizeBytes"] == 4096
    assert body["state"] == "pending" and body["requestId"]
    # Pending on the store, nothing copied yet.
    state = ok(client.http.get(body["statusUrl"]))
    assert state["state"] == "pending" and state["readyVersion"] is None and state["requestId"] == body["requestId"]
    assert "fileId" not in state and not (efs_root / "models" / "grand modèle.bin").exists()
    # The hand-off: the object copied onto itself with a marker, its own metadata and type kept.
    head = s3_client.head_object(Bucket=small_sync, Key=key)
    assert head["Metadata"]["efs-ml-ingest-request"] == body["requestId"] and head["Metadata"]["owner"] == "team-a"
    assert head["ContentType"] == "application/octet-stream"
    # The event that copy fires lands it; the pending state is settled.
    assert deliver(client, small_sync, key).payload[0]["status"] == "created"
    state = ok(client.http.get(body["statusUrl"]))
    assert state["state"] == "ready" and state["version"] == 1 and state["readyVersion"] == 1
    assert state["sizeBytes"] == 4096 and "error" not in state
    listing = ok(client.http.get("/models"))
    assert [(m["name"], m["state"]) for m in listing["models"]] == [("grand modèle.bin", "ready")]


def test_inputs_key_gets_an_inputs_status_url(client, small_sync, s3_client):
    s3_client.put_object(Bucket=small_sync, Key="inputs/batch 1.json", Body=b"[" + b"1," * 1000 + b"1]")
    body = accepted(client, "inputs/batch 1.json")
    assert body["statusUrl"] == "/inputs/batch%201.json"
    assert ok(client.http.get(body["statusUrl"]))["state"] == "pending"
    deliver(client, small_sync, "inputs/batch 1.json")
    got = ok(client.http.get(body["statusUrl"]))
    assert got["state"] == "ready" and got["key"] == "inputs/batch 1.json"
    error(client.http.get("/inputs/ghost.json"), 404, "NOT_FOUND")
    # An input is not a model.
    error(client.http.get("/models/batch%201.json"), 404, "NOT_FOUND")


def test_pending_does_not_hide_the_ready_version(client, small_sync, s3_client):
    s3_client.put_object(Bucket=small_sync, Key="models/m.bin", Body=b"v1")
    first = ok(post(client, "/ingest", {"key": "models/m.bin"}))
    s3_client.put_object(Bucket=small_sync, Key="models/m.bin", Body=b"2" * 2048)
    accepted(client, "models/m.bin")
    state = ok(client.http.get("/models/m.bin"))
    assert state["state"] == "pending" and state["readyVersion"] == 1
    assert state["fileId"] == first["fileId"] and state["version"] == 1 and state["sizeBytes"] == 2
    deliver(client, small_sync, "models/m.bin")
    state = ok(client.http.get("/models/m.bin"))
    assert state["state"] == "ready" and state["version"] == 2 and state["readyVersion"] == 2


def test_event_for_an_object_over_the_limit_is_failed_on_the_store(client, small_sync, s3_client):
    s3_client.put_object(Bucket=small_sync, Key="models/huge.bin", Body=b"H" * 70000)
    outcome = deliver(client, small_sync, "models/huge.bin").payload[0]
    assert outcome["status"] == "skipped"  # permanent: no Lambda retry
    state = ok(client.http.get("/models/huge.bin"))
    assert state["state"] == "failed" and state["readyVersion"] is None
    assert state["error"]["error"] == "FILE_TOO_LARGE" and state["error"]["time"] == state["stateTime"]
    listing = ok(client.http.get("/models"))
    assert [(m["name"], m["state"], m["error"]["error"]) for m in listing["models"]] == [
        ("huge.bin", "failed", "FILE_TOO_LARGE")
    ]


def test_event_for_a_key_whose_name_cannot_be_stored_is_listed(client, small_sync, s3_client):
    bad = "models/" + "n" * 300 + ".onnx"  # over the name limit
    s3_client.put_object(Bucket=small_sync, Key=bad, Body=b"x")
    s3_client.put_object(Bucket=small_sync, Key="models/.hidden", Body=b"x")
    for key in (bad, "models/.hidden"):
        assert deliver(client, small_sync, key).payload[0]["status"] == "skipped"
    listing = ok(client.http.get("/models"))
    assert listing["count"] == 2
    for entry in listing["models"]:
        assert entry["name"] is None and entry["state"] == "failed" and entry["readyVersion"] is None
        assert entry["error"]["error"] == "INVALID_REQUEST" and len(entry["id"]) == 40
    assert sorted(e["key"] for e in listing["models"]) == sorted([bad, "models/.hidden"])
    # The same key again: one record, not two.
    deliver(client, small_sync, "models/.hidden")
    assert ok(client.http.get("/models"))["count"] == 2


def test_transient_event_failure_is_recorded_and_a_retry_replaces_it(client, failing_gets, small_sync, s3_client):
    s3_client.put_object(Bucket=small_sync, Key="models/t.bin", Body=b"T" * 100)
    with pytest.raises(Exception, match="Lambda will retry"):
        deliver(client, small_sync, "models/t.bin")
    state = ok(client.http.get("/models/t.bin"))
    assert state["state"] == "failed" and state["error"]["error"] == "PROCESSING_FAILED"
    failing_gets.failing = False  # Lambda's retry, once S3 answers again
    assert deliver(client, small_sync, "models/t.bin").payload[0]["status"] == "created"
    state = ok(client.http.get("/models/t.bin"))
    assert state["state"] == "ready" and "error" not in state


def test_sync_key_ingest_failing_after_validation_is_recorded(client, failing_gets, small_sync, s3_client):
    s3_client.put_object(Bucket=small_sync, Key="models/s.bin", Body=b"S" * 100)
    failure = failed_post(client, {"key": "models/s.bin"})
    state = ok(client.http.get("/models/s.bin"))
    assert state["state"] == "failed" and state["error"]["error"] == failure["error"]
    assert state["requestId"] == failure["requestId"]
    failing_gets.failing = False
    ok(post(client, "/ingest", {"key": "models/s.bin"}))
    assert ok(client.http.get("/models/s.bin"))["state"] == "ready"


def test_validation_errors_of_a_sync_ingest_leave_no_state(client, small_sync):
    error(post(client, "/ingest", {"key": "models/nothing.bin"}), 404, "S3_NOT_FOUND")
    error(client.http.get("/models/nothing.bin"), 404, "NOT_FOUND")
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}


def test_inline_ingest_failing_on_the_store_is_recorded(client, efs_root):
    # The object's path is taken by a directory: the store cannot swap it in.
    (efs_root / "models" / "d.bin").mkdir(parents=True)
    error(post(client, "/ingest", {"data": "abc", "filename": "d.bin"}), 500, "EFS_WRITE_FAILED")
    state = ok(client.http.get("/models/d.bin"))
    assert state["state"] == "failed" and state["error"]["error"] == "EFS_WRITE_FAILED"
    (efs_root / "models" / "d.bin").rmdir()
    ok(post(client, "/ingest", {"data": "abc", "filename": "d.bin"}))
    assert ok(client.http.get("/models/d.bin"))["state"] == "ready"


def test_hand_off_copy_failure_replaces_pending_with_failed(client, small_sync, s3_client, s3_proxy):
    s3_client.put_object(Bucket=small_sync, Key="models/c.bin", Body=b"C" * 2048)
    # The copy is a PUT carrying x-amz-copy-source; plain HEADs pass.
    s3_proxy.rule = lambda method, path, n: Fault(status=503, code="SlowDown") if method == "PUT" else None
    failure = failed_post(client, {"key": "models/c.bin"})
    state = ok(client.http.get("/models/c.bin"))
    assert state["state"] == "failed" and state["error"]["error"] == failure["error"]
