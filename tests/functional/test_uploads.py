"""POST /uploads: presigned PUT URLs against a real moto S3, then the S3 event lands the model."""

import hashlib
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.support.routes import error, ok, post


def presign(client, key, size):
    return post(client, "/uploads", {"key": key, "sizeBytes": size})


def test_presigned_put_then_s3_event_lands_the_model(client, bucket, s3_client):
    data = b"\x00\x01model-weights" * 4096
    body = ok(presign(client, "models/big.bin", len(data)))
    assert body["method"] == "PUT" and body["key"] == "models/big.bin" and body["sizeBytes"] == len(data)
    assert body["expiresIn"] == 900 and body["statusUrl"] == "/models/big.bin"
    query = parse_qs(urlparse(body["url"]).query)
    # SigV4, with Content-Length among the signed headers.
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    assert query["X-Amz-Expires"] == ["900"]

    # Not there yet: the documented 404.
    error(client.http.get("/models/big.bin"), 404, "NOT_FOUND")

    put = requests.put(body["url"], data=data, headers=body["headers"], timeout=30)
    assert put.status_code == 200, put.text
    assert s3_client.get_object(Bucket=bucket, Key="models/big.bin")["Body"].read() == data

    event = client.events.generate_s3_event(bucket=bucket, key="models/big.bin")
    client.lambda_.invoke("on_object_created", event)

    model = ok(client.http.get("/models/big.bin"))
    assert model["sha256"] == hashlib.sha256(data).hexdigest() and model["sizeBytes"] == len(data)
    assert model["source"] == f"s3://{bucket}/models/big.bin" and model["version"] == 1
    listed = ok(client.http.get("/models"))
    assert [m["name"] for m in listed["models"]] == ["big.bin"] and listed["count"] == 1

    predicted = ok(post(client, "/predict", {"fileId": model["fileId"], "model": "big.bin"}))
    assert predicted["result"] == {"modelSize": len(data), "checksum": model["sha256"], "processed": True}


def test_inputs_prefix_is_presignable(client, bucket):
    body = ok(presign(client, "inputs/batch.json", 10))
    assert body["key"] == "inputs/batch.json" and body["statusUrl"] == "/inputs/batch.json"
    assert f"/{bucket}/inputs/batch.json" in body["url"] or f"{bucket}." in body["url"]


def test_expiry_comes_from_settings(client, bucket, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("UPLOAD_URL_EXPIRES_SECONDS", "60")
    edge.reset()
    body = ok(presign(client, "models/m.bin", 1))
    assert body["expiresIn"] == 60 and parse_qs(urlparse(body["url"]).query)["X-Amz-Expires"] == ["60"]

    monkeypatch.setenv("UPLOAD_URL_EXPIRES_SECONDS", str(8 * 24 * 3600))  # beyond SigV4's 7 days
    edge.reset()
    error(presign(client, "models/m.bin", 1), 500, "PROCESSING_FAILED")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"key": "models/m.bin"},
        {"sizeBytes": 3},
        {"key": "outputs/x.result", "sizeBytes": 3},
        {"key": "models/../etc/passwd", "sizeBytes": 3},
        {"key": "models/m.bin", "sizeBytes": -1},
        {"key": "models/m.bin", "sizeBytes": "3"},
        {"key": "models/m.bin", "sizeBytes": True},
        {"key": "models/m.bin", "sizeBytes": 3, "acl": "public-read"},
        {"key": "models/", "sizeBytes": 3},
    ],
)
def test_bad_requests_are_400(client, bucket, body):
    error(post(client, "/uploads", body), 400, "INVALID_REQUEST")


def test_malformed_json_is_400(client, bucket):
    error(post(client, "/uploads", "{nope"), 400, "INVALID_REQUEST")


def test_size_above_max_ingest_is_413_before_any_url(client, bucket, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("MAX_INGEST_BYTES", "1000")
    edge.reset()
    body = error(presign(client, "models/m.bin", 1001), 413, "FILE_TOO_LARGE")
    assert body["maxSize"] == "1000B" and "url" not in body
    ok(presign(client, "models/m.bin", 1000))


def test_without_a_bucket_uploads_are_refused(client):
    error(presign(client, "models/m.bin", 1), 400, "INVALID_REQUEST")


def test_demo_client_streams_a_presigned_put_with_length_and_progress(client, bucket, s3_client, capsys):
    """The demonstration client's upload: Content-Length (S3 refuses chunked PUTs), a progress bar."""
    import io
    import os

    from demo.client import PROGRESS_THRESHOLD_BYTES, ApiClient, ProgressReader
    from demo.target import Target

    data = os.urandom(PROGRESS_THRESHOLD_BYTES + 12345)
    prepared = requests.Request(
        "PUT", "http://127.0.0.1:1/x", data=ProgressReader(io.BytesIO(data), len(data), "t")
    ).prepare()
    assert prepared.headers["Content-Length"] == str(len(data)) and "Transfer-Encoding" not in prepared.headers

    up = ok(presign(client, "models/streamed.bin", len(data)))
    api = ApiClient(Target(api_url="http://127.0.0.1:1"))
    answer = api.put_presigned(up["url"], io.BytesIO(data), len(data), up["headers"], "streamed")
    assert answer.status == 200, answer.body
    assert s3_client.get_object(Bucket=bucket, Key="models/streamed.bin")["Body"].read() == data
    assert "streamed" in capsys.readouterr().err  # tqdm's bar, on stderr
