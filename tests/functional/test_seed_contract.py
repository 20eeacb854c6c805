"""The seed's API section, as written: the complete workflow and every error."""

import base64
import hashlib
import json
import os

import pytest

from tests.support.routes import error, ok, post


def test_complete_example_workflow(client, efs_root):
    # Step 1: ingest data
    ingest = ok(post(client, "/ingest", {"data": "sample model data", "filename": "test-model.pt"}))
    assert set(ingest) >= {"fileId", "efsPath", "s3Key", "sizeBytes", "status"}
    assert ingest["status"] == "created"
    assert ingest["sizeBytes"] == len(b"sample model data")
    assert ingest["efsPath"] == os.path.join(str(efs_root), "models", "test-model.pt")
    assert open(ingest["efsPath"], "rb").read() == b"sample model data"
    # Step 2-3: predict with its fileId
    file_id = ingest["fileId"]
    result = ok(post(client, "/predict", {"fileId": file_id, "model": "test-model.pt"}))
    assert result["fileId"] == file_id
    assert result["efsPath"] == os.path.join(str(efs_root), "outputs", f"{file_id}.result")
    assert isinstance(result["durationMs"], (int, float)) and result["durationMs"] >= 0
    assert result["result"] == {
        "modelSize": 17,
        "checksum": hashlib.sha256(b"sample model data").hexdigest(),
        "processed": True,
    }
    assert result["s3Key"] is None  # no bucket configured: nothing archived
    stored = json.loads(open(result["efsPath"], "rb").read())
    assert stored["result"] == result["result"] and stored["modelVersion"] == 1


def test_ingest_is_idempotent_and_versions_updates(client):
    first = ok(post(client, "/ingest", {"data": "v1", "filename": "m.pt"}))
    again = ok(post(client, "/ingest", {"data": "v1", "filename": "m.pt"}))
    assert again["status"] == "exists" and again["fileId"] == first["fileId"]
    updated = ok(post(client, "/ingest", {"data": "v2", "filename": "m.pt"}))
    assert updated["status"] == "updated" and updated["version"] == 2
    assert updated["fileId"] == first["fileId"]


def test_base64_binary_and_inputs_prefix(client, efs_root):
    blob = bytes(range(256))
    body = ok(
        post(
            client,
            "/ingest",
            {"data": base64.b64encode(blob).decode(), "encoding": "base64", "filename": "inputs/blob.bin"},
        )
    )
    assert body["efsPath"].endswith("/inputs/blob.bin") and open(body["efsPath"], "rb").read() == blob


@pytest.mark.parametrize(
    "body,message",
    [
        ({}, "Request body must contain 'key' or 'data' field"),
        ({"filename": "a.pt"}, "Request body must contain 'key' or 'data' field"),
        ({"data": "x"}, "filename"),
        ({"data": "x", "key": "models/a", "filename": "a"}, "not both"),
        ({"data": 5, "filename": "a.pt"}, "'data' must be a string"),
        ({"data": "", "filename": "a.pt"}, "must not be empty"),
        ({"data": "", "filename": "a.pt", "encoding": "base64"}, "must not be empty"),
        ({"data": "x", "filename": "../etc/passwd"}, "filename"),
        ({"data": "x", "filename": "a.pt", "encoding": "base64"}, "base64"),
        ({"data": "x", "filename": "a.pt", "encoding": "gzip"}, "encoding"),
        ({"data": "x", "filename": "a.pt", "extra": 1}, "Unknown field"),
        ({"key": "outputs/a.result"}, "prefix"),
        ({"key": 12}, "key"),
    ],
)
def test_ingest_invalid_request(client, body, message):
    assert message in error(post(client, "/ingest", body), 400, "INVALID_REQUEST")["message"]


@pytest.mark.parametrize(
    "raw,content_type",
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ('"str"', "application/json"),
        ("", "application/json"),
        ("[" * 100000 + "]" * 100000, "application/json"),
    ],
)
def test_malformed_bodies_are_400(client, raw, content_type):
    error(post(client, "/ingest", raw, content_type), 400, "INVALID_REQUEST")
    error(post(client, "/predict", raw, content_type), 400, "INVALID_REQUEST")


def test_file_too_large(client, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("MAX_INGEST_BYTES", "10")
    edge.reset()
    body = error(post(client, "/ingest", {"data": "x" * 11, "filename": "big.pt"}), 413, "FILE_TOO_LARGE")
    assert body["maxSize"] == "10B"
    error(
        post(
            client,
            "/ingest",
            {"data": base64.b64encode(b"x" * 30).decode(), "encoding": "base64", "filename": "big.pt"},
        ),
        413,
        "FILE_TOO_LARGE",
    )


def test_oversized_request_body(client, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("MAX_REQUEST_BYTES", "100")
    edge.reset()
    error(post(client, "/ingest", {"data": "x" * 200, "filename": "a.pt"}), 413, "FILE_TOO_LARGE")


def test_predict_errors(client):
    for body in (
        {},
        {"fileId": "a"},
        {"model": "m.pt"},
        {"fileId": 1, "model": "m.pt"},
        {"fileId": "a", "model": "../m"},
        {"fileId": "../../x", "model": "m.pt"},
        {"fileId": "a", "model": "m.pt", "inputs": [1]},
        {"fileId": "a", "model": "m", "x": 1},
    ):
        error(post(client, "/predict", body), 400, "INVALID_REQUEST")
    missing = error(post(client, "/predict", {"fileId": "abc", "model": "nope.pt"}), 404, "NOT_FOUND")
    assert missing["fileId"] == "abc" and missing["message"] == "Model file not found on EFS"


def test_s3_ingest_without_bucket_is_a_clear_400(client):
    error(post(client, "/ingest", {"key": "models/a.pt"}), 400, "INVALID_REQUEST")


def test_wrong_method_and_health(client):
    r = client.http.get("/ingest")
    assert r.status_code == 405
    body = json.loads(r.body)
    assert body["error"] == "INVALID_REQUEST" and body["requestId"]
    health = json.loads(client.http.get("/health").body)
    assert health["status"] == "ok" and health["store"]["writable"] is True


def test_health_reports_unwritable_store(client, efs_root):
    os.chmod(efs_root, 0o500)
    try:
        if os.access(efs_root, os.W_OK):  # root ignores permissions: break the layout instead
            os.chmod(efs_root, 0o700)
            (efs_root / ".meta").write_text("not a directory")
        body = error(client.http.get("/health"), 500, "EFS_WRITE_FAILED")
        assert body["stage"] == "health" and body["store"]["writable"] is False
    finally:
        os.chmod(efs_root, 0o700)
