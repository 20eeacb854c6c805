"""Every request and S3 event through the app is one observed invocation (http/events middlewares)."""

import json

import pytest

from chalicelib import observability as obs
from tests.support.emf import assert_valid_emf, json_lines


@pytest.fixture(autouse=True)
def fresh():
    obs.reset_cold_start()
    yield
    obs.reset_cold_start()


def test_every_request_through_the_app_is_logged_and_measured(client, capsys):
    obs.reset_cold_start()
    capsys.readouterr()
    r = client.http.post(
        "/ingest", body=json.dumps({"data": "abc", "filename": "m.pt"}), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200
    bad = client.http.get("/models/absent.pt")
    assert bad.status_code == 404
    lines = json_lines(capsys.readouterr().out)
    summaries = [l for l in lines if l.get("message", "").endswith(" done")]
    assert [(s["route"], s["status"]) for s in summaries] == [("POST /ingest", 200), ("GET /models/{name}", 404)]
    assert summaries[1]["errorCode"] == "NOT_FOUND"
    assert summaries[1]["requestId"] == json.loads(bad.body)["requestId"]
    [ingest_emf] = [d for d in [l for l in lines if "_aws" in l] if d.get("Operation") == "POST /ingest"]
    assert_valid_emf(ingest_emf)
    assert ingest_emf["IngestBytes"] == 3
    [cold] = [d for d in lines if "ColdStart" in d]
    assert_valid_emf(cold)
    assert cold["operation"] == "POST /ingest" and "Operation" not in cold


def test_s3_event_invocation_is_logged_and_measured(client, bucket, s3_client, capsys):
    s3_client.put_object(Bucket=bucket, Key="models/evented.bin", Body=b"x" * 100)
    event = client.events.generate_s3_event(bucket=bucket, key="models/evented.bin")
    capsys.readouterr()
    client.lambda_.invoke("on_object_created", event)
    lines = json_lines(capsys.readouterr().out)
    [summary] = [l for l in lines if l.get("message") == "s3:ObjectCreated done"]
    assert summary["outcome"] == "ok" and summary["recordStatuses"] == {"created": 1}
    [doc] = [d for d in lines if "_aws" in d and "ColdStart" not in d]
    assert_valid_emf(doc)
    assert doc["Operation"] == "s3:ObjectCreated" and doc["IngestBytes"] == 100
