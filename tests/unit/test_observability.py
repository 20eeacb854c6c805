"""EMF documents and JSON logs: their shape as CloudWatch parses them."""
import json
import logging

import pytest

from chalicelib import observability as obs


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def emf_docs(text):
    return [d for d in json_lines(text) if "_aws" in d]


def assert_valid_emf(doc):
    """The EMF specification's structural rules."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    [directive] = meta["CloudWatchMetrics"]
    assert isinstance(directive["Namespace"], str) and directive["Namespace"]
    for dimension_set in directive["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        for name in dimension_set:
            assert isinstance(doc[name], str), f"dimension {name} must be a string member"
    assert 1 <= len(directive["Metrics"]) <= 100
    for m in directive["Metrics"]:
        assert m["Unit"] in ("Count", "Bytes", "Milliseconds")
        value = doc[m["Name"]]
        values = value if isinstance(value, list) else [value]
        assert values and all(isinstance(v, (int, float)) for v in values)


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    obs.reset_cold_start()
    yield
    obs.reset_cold_start()


def test_invocation_emits_one_emf_document_with_cold_start_and_metrics(capsys):
    with obs.invocation("req-1", "POST /ingest"):
        obs.metric("IngestBytes", 1024, obs.BYTES)
        obs.metric("IngestDurationMs", 3.5, obs.MILLISECONDS)
    [doc] = emf_docs(capsys.readouterr().out)
    assert_valid_emf(doc)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "efs-ml"
    assert directive["Dimensions"] == [["Operation", "Service"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "ColdStart": "Count", "IngestBytes": "Bytes", "IngestDurationMs": "Milliseconds"}
    assert doc["Service"] == "efs-ml" and doc["Operation"] == "POST /ingest"
    assert doc["ColdStart"] == 1 and doc["IngestBytes"] == 1024 and doc["IngestDurationMs"] == 3.5
    assert doc["requestId"] == "req-1"


def test_cold_start_is_counted_once_per_process(capsys):
    with obs.invocation("a", "GET /health"):
        pass
    with obs.invocation("b", "GET /health"):
        obs.metric("ModelCacheHit", 1)
    docs = emf_docs(capsys.readouterr().out)
    assert [d.get("ColdStart") for d in docs] == [1, None]


def test_repeated_metric_becomes_a_value_array(capsys):
    obs.reset_cold_start()
    with obs.invocation("r", "s3:ObjectCreated"):
        for size in (10, 20, 30):
            obs.metric("IngestBytes", size, obs.BYTES)
    [doc] = emf_docs(capsys.readouterr().out)
    assert doc["IngestBytes"] == [10, 20, 30]
    assert_valid_emf(doc)


def test_metric_outside_an_invocation_is_emitted_at_once(capsys):
    obs.metric("ModelLoadMs", 12.5, obs.MILLISECONDS)
    [doc] = emf_docs(capsys.readouterr().out)
    assert_valid_emf(doc)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service"]]
    assert doc["ModelLoadMs"] == 12.5


def test_emf_limits_are_respected(capsys):
    with obs.invocation("r", "op"):
        for i in range(150):
            obs.metric(f"M{i}", 1)
        for _ in range(150):
            obs.metric("M0", 1)
    [doc] = emf_docs(capsys.readouterr().out)
    assert len(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) == obs.MAX_METRICS
    assert len(doc["M0"]) == obs.MAX_VALUES
    assert_valid_emf(doc)


def test_record_helpers(capsys):
    with obs.invocation("r", "POST /predict"):
        obs.record_model_lookup(False, 41.2)
        obs.record_model_lookup(True, 41.2)
    [doc] = emf_docs(capsys.readouterr().out)
    assert doc["ModelCacheHit"] == [0, 1] and doc["ModelCacheMiss"] == [1, 0]
    assert doc["ModelLoadMs"] == 41.2  # only the miss loaded


def test_json_log_lines_carry_the_invocation_context(capsys):
    logger = obs.configure_logging("INFO", logging.getLogger("efs-ml-test"))
    with obs.invocation("req-9", "GET /models"):
        logger.info("hello %s", "world", extra={"bytes": 3})
    lines = json_lines(capsys.readouterr().out)
    [line] = [l for l in lines if l.get("logger") == "efs-ml-test"]
    assert line["message"] == "hello world" and line["level"] == "INFO" and line["bytes"] == 3
    assert line["requestId"] == "req-9" and line["route"] == "GET /models" and line["coldStart"] is True
    assert line["timestamp"].endswith("Z")


def test_summary_line_has_duration_and_outcome_and_errors_reraise(capsys):
    obs.configure_logging("INFO")
    with pytest.raises(KeyError):
        with obs.invocation("req-x", "s3:ObjectCreated"):
            raise KeyError("boom")
    [summary] = [l for l in json_lines(capsys.readouterr().out) if l.get("message") == "s3:ObjectCreated done"]
    assert summary["level"] == "ERROR" and summary["outcome"] == "error" and summary["errorType"] == "KeyError"
    assert isinstance(summary["durationMs"], float) and summary["requestId"] == "req-x"


def test_every_request_through_the_app_is_logged_and_measured(client, capsys):
    obs.reset_cold_start()
    capsys.readouterr()
    r = client.http.post("/ingest", body=json.dumps({"data": "abc", "filename": "m.pt"}),
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    bad = client.http.get("/models/absent.pt")
    assert bad.status_code == 404
    lines = json_lines(capsys.readouterr().out)
    summaries = [l for l in lines if l.get("message", "").endswith(" done")]
    assert [(s["route"], s["status"]) for s in summaries] == [("POST /ingest", 200), ("GET /models/{name}", 404)]
    assert summaries[1]["errorCode"] == "NOT_FOUND"
    assert summaries[1]["requestId"] == json.loads(bad.body)["requestId"]
    [ingest_emf] = [d for d in emf_docs("\n".join(json.dumps(l) for l in lines)) if d["Operation"] == "POST /ingest"]
    assert_valid_emf(ingest_emf)
    assert ingest_emf["IngestBytes"] == 3 and ingest_emf["ColdStart"] == 1


def test_s3_event_invocation_is_logged_and_measured(client, bucket, s3_client, capsys):
    s3_client.put_object(Bucket=bucket, Key="models/evented.bin", Body=b"x" * 100)
    event = client.events.generate_s3_event(bucket=bucket, key="models/evented.bin")
    capsys.readouterr()
    client.lambda_.invoke("on_object_created", event)
    lines = json_lines(capsys.readouterr().out)
    [summary] = [l for l in lines if l.get("message") == "s3:ObjectCreated done"]
    assert summary["outcome"] == "ok" and summary["recordStatuses"] == {"created": 1}
    [doc] = [d for d in lines if "_aws" in d]
    assert_valid_emf(doc)
    assert doc["Operation"] == "s3:ObjectCreated" and doc["IngestBytes"] == 100
