"""Ingest from S3 and the S3 event handler, against a real moto server."""

import hashlib
import json
import os
from urllib.parse import quote_plus

import pytest

from tests.support.routes import error, ok, post


def test_ingest_by_key_streams_object(client, bucket, s3_client, efs_root):
    data = b"\x00\x01model" * 300_000  # several chunks
    s3_client.put_object(Bucket=bucket, Key="models/resnet50.pt", Body=data)
    body = ok(post(client, "/ingest", {"key": "models/resnet50.pt"}))
    assert body["status"] == "created" and body["s3Key"] == "models/resnet50.pt"
    assert body["sizeBytes"] == len(data)
    assert open(efs_root / "models" / "resnet50.pt", "rb").read() == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    # Same ETag: answered from the manifest without copying again.
    assert ok(post(client, "/ingest", {"key": "models/resnet50.pt"}))["status"] == "exists"
    s3_client.put_object(Bucket=bucket, Key="models/resnet50.pt", Body=b"retrained")
    updated = ok(post(client, "/ingest", {"key": "models/resnet50.pt"}))
    assert (updated["status"], updated["version"], updated["fileId"]) == ("updated", 2, body["fileId"])


def test_manifest_records_source_and_etag(client, bucket, s3_client, efs_root):
    s3_client.put_object(Bucket=bucket, Key="inputs/x.json", Body=b"{}")
    etag = s3_client.head_object(Bucket=bucket, Key="inputs/x.json")["ETag"]
    ok(post(client, "/ingest", {"key": "inputs/x.json"}))
    manifest = json.loads((efs_root / ".meta" / "inputs" / "x.json.json").read_text())
    assert manifest["source"] == f"s3://{bucket}/inputs/x.json" and manifest["etag"] == etag


def test_missing_key_is_s3_not_found(client, bucket):
    body = error(post(client, "/ingest", {"key": "models/nonexistent.pt"}), 404, "S3_NOT_FOUND")
    assert body["key"] == "models/nonexistent.pt" and body["message"] == "S3 object not found"


def test_too_large_is_refused_before_copying(client, bucket, s3_client, efs_root, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("MAX_INGEST_BYTES", "1024")
    edge.reset()
    s3_client.put_object(Bucket=bucket, Key="models/big.pt", Body=b"x" * 2048)
    error(post(client, "/ingest", {"key": "models/big.pt"}), 413, "FILE_TOO_LARGE")
    assert not (efs_root / "models" / "big.pt").exists()


def test_predict_archives_result_to_s3(client, bucket, s3_client):
    ingest = ok(post(client, "/ingest", {"data": "weights", "filename": "m.pt"}))
    result = ok(post(client, "/predict", {"fileId": ingest["fileId"], "model": "m.pt"}))
    assert result["s3Key"] == f"outputs/{ingest['fileId']}.result"
    archived = s3_client.get_object(Bucket=bucket, Key=result["s3Key"])["Body"].read()
    assert archived == open(result["efsPath"], "rb").read()


def _event(client, bucket, *keys):
    event = client.events.generate_s3_event(bucket=bucket, key=keys[0])
    record = event["Records"][0]
    event["Records"] = []
    for key in keys:
        r = json.loads(json.dumps(record))
        r["s3"]["object"]["key"] = quote_plus(key, safe="/")  # S3 URL-encodes keys
        event["Records"].append(r)
    return event


def test_s3_event_handles_every_record(client, bucket, s3_client, efs_root):
    s3_client.put_object(Bucket=bucket, Key="models/a.pt", Body=b"A")
    s3_client.put_object(Bucket=bucket, Key="inputs/b+c.json", Body=b"{}")
    s3_client.put_object(Bucket=bucket, Key="models/with space.pt", Body=b"S")
    s3_client.put_object(Bucket=bucket, Key="models/résumé (final).bin", Body=b"R")
    s3_client.put_object(Bucket=bucket, Key="models/.hidden", Body=b"H")
    keys = ("models/a.pt", "inputs/b+c.json", "models/with space.pt", "models/résumé (final).bin", "models/.hidden")
    result = client.lambda_.invoke("on_object_created", _event(client, bucket, *keys))
    statuses = [(o["key"], o["status"]) for o in result.payload]
    assert statuses == [
        ("models/a.pt", "created"),
        ("inputs/b+c.json", "created"),
        ("models/with space.pt", "created"),
        ("models/résumé (final).bin", "created"),
        ("models/.hidden", "skipped"),
    ]  # not a valid store name
    assert (efs_root / "inputs" / "b+c.json").read_bytes() == b"{}"
    assert (efs_root / "models" / "with space.pt").read_bytes() == b"S"
    assert (efs_root / "models" / "résumé (final).bin").read_bytes() == b"R"


def test_nfd_key_is_read_as_given_and_stored_as_nfc(client, bucket, s3_client, efs_root):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "models/modèle.bin")  # as a macOS upload spells it
    s3_client.put_object(Bucket=bucket, Key=nfd, Body=b"M")
    result = client.lambda_.invoke("on_object_created", _event(client, bucket, nfd))
    assert result.payload[0]["status"] == "created"
    assert os.listdir(efs_root / "models") == ["modèle.bin"]  # one name, in NFC
    body = ok(post(client, "/ingest", {"key": nfd}))
    assert (body["status"], body["s3Key"]) == ("exists", nfd)
    got = ok(client.http.get("/models/mod%C3%A8le.bin"))
    assert got["name"] == "modèle.bin" and got["source"] == f"s3://{bucket}/{nfd}"


def test_redelivered_event_is_harmless(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/a.pt", Body=b"A")
    event = _event(client, bucket, "models/a.pt")
    outcomes = [client.lambda_.invoke("on_object_created", event).payload[0]["status"] for _ in range(3)]
    assert outcomes == ["created", "exists", "exists"]


def test_event_for_deleted_object_or_other_bucket_is_skipped(client, bucket):
    assert (
        client.lambda_.invoke("on_object_created", _event(client, bucket, "models/gone.pt")).payload[0]["status"]
        == "skipped"
    )
    assert (
        client.lambda_.invoke("on_object_created", _event(client, "other-bucket", "models/a.pt")).payload[0]["status"]
        == "skipped"
    )


def test_transient_failure_raises_so_lambda_retries(client, bucket, s3_client, efs_root, monkeypatch):
    s3_client.put_object(Bucket=bucket, Key="models/a.pt", Body=b"A")
    (efs_root / "models").mkdir()
    (efs_root / ".locks").write_text("blocks the lock directory")  # every write now fails
    from chalicelib.events import RetryableEventError

    with pytest.raises(RetryableEventError):
        client.lambda_.invoke("on_object_created", _event(client, bucket, "models/a.pt"))
    (efs_root / ".locks").unlink()
    assert (
        client.lambda_.invoke("on_object_created", _event(client, bucket, "models/a.pt")).payload[0]["status"]
        == "created"
    )
