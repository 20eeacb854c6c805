"""Lambda's 6 MB payload limit and the sync ingest threshold: clear 413s
that say where large files go, and the way around them still working."""

import json

import pytest

from chalicelib.config import GIB, MIB, load_settings
from tests.support.routes import error, ok, post

LAMBDA_SYNC_PAYLOAD = 6_000_000  # "6 MB": the conservative (decimal) reading of Lambda's quota


def test_default_request_limit_fits_lambdas_payload_with_room_for_the_event():
    settings = load_settings({})
    assert settings.max_request_bytes == 5 * MIB
    # The body travels inside the API Gateway event: headers (twice), request
    # context, JSON escaping. At least 10% of the payload stays for them.
    assert settings.max_request_bytes <= LAMBDA_SYNC_PAYLOAD * 0.9
    assert settings.sync_ingest_max_bytes == GIB == settings.max_ingest_bytes


def test_body_over_the_limit_is_413_pointing_to_uploads(client):
    body = json.dumps({"data": "x" * (5 * MIB), "filename": "big.bin"})
    assert len(body) > 5 * MIB
    resp = error(post(client, "/ingest", body), 413, "FILE_TOO_LARGE")
    assert resp["maxSize"] == "5MB" and "POST /uploads" in resp["message"], resp


def test_body_just_under_the_limit_is_stored(client):
    data = "x" * (5 * MIB - 100)
    assert ok(post(client, "/ingest", {"data": data, "filename": "edge.bin"}))["sizeBytes"] == len(data)


@pytest.fixture
def sync_limit(bucket, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("SYNC_INGEST_MAX_BYTES", "1024")
    edge.reset()
    yield bucket
    edge.reset()


def test_key_over_the_sync_limit_is_accepted_and_the_event_path_takes_it(client, sync_limit, s3_client, efs_root):
    s3_client.put_object(Bucket=sync_limit, Key="models/large.bin", Body=b"L" * 2048)
    resp = post(client, "/ingest", {"key": "models/large.bin"})
    assert resp.status_code == 202, resp.body
    body = json.loads(resp.body)
    assert body["status"] == "accepted" and body["statusUrl"] == "/models/large.bin"
    assert body["key"] == "models/large.bin" and body["name"] == "large.bin" and body["sizeBytes"] == 2048
    assert not (efs_root / "models" / "large.bin").exists()
    # The S3-event function has no gateway in front of it: no sync limit there.
    event = client.events.generate_s3_event(bucket=sync_limit, key="models/large.bin")
    assert client.lambda_.invoke("on_object_created", event).payload[0]["status"] == "created"
    # Once stored, the same object answers 'exists' (nothing to copy) even above the limit.
    assert ok(post(client, "/ingest", {"key": "models/large.bin"}))["status"] == "exists"
    # At the limit is copied while the client waits.
    s3_client.put_object(Bucket=sync_limit, Key="models/edge.bin", Body=b"E" * 1024)
    assert ok(post(client, "/ingest", {"key": "models/edge.bin"}))["status"] == "created"


def test_presigned_upload_still_serves_what_the_body_limit_refuses(client, bucket):
    body = ok(post(client, "/uploads", {"key": "models/big.onnx", "sizeBytes": 700 * MIB}))
    assert body["method"] == "PUT" and body["headers"] == {"Content-Length": str(700 * MIB)}


def test_status_url_is_percent_encoded_once(client, bucket):
    body = ok(post(client, "/uploads", {"key": "models/résumé (final).pt", "sizeBytes": 10}))
    assert body["key"] == "models/résumé (final).pt"
    assert body["statusUrl"] == "/models/r%C3%A9sum%C3%A9%20%28final%29.pt"
    ok(post(client, "/ingest", {"data": "0123456789", "filename": "résumé (final).pt"}))
    assert ok(client.http.get(body["statusUrl"]))["name"] == "résumé (final).pt"
