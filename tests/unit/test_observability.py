"""EMF documents and JSON logs: their shape as CloudWatch parses them."""

import json
import logging

import pytest

from chalicelib import observability as obs
from tests.support.emf import assert_valid_emf, emf_docs, invocation_docs, json_lines


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    obs.reset_cold_start()
    yield
    obs.reset_cold_start()


def test_invocation_emits_its_metrics_and_a_cold_start_by_function(capsys, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "efs-ml-dev")
    with obs.invocation("req-1", "POST /ingest"):
        obs.metric("IngestBytes", 1024, obs.BYTES)
        obs.metric("IngestDurationMs", 3.5, obs.MILLISECONDS)
    cold, doc = emf_docs(capsys.readouterr().out)
    for d in (cold, doc):
        assert_valid_emf(d)
    # A cold start is the container's: one series per function, not one per route.
    assert cold["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Function", "Service"]]
    assert cold["ColdStart"] == 1 and cold["Function"] == "efs-ml-dev" and cold["requestId"] == "req-1"
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "efs-ml"
    assert directive["Dimensions"] == [["Operation", "Service"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "IngestBytes": "Bytes",
        "IngestDurationMs": "Milliseconds",
    }
    assert doc["Service"] == "efs-ml" and doc["Operation"] == "POST /ingest"
    assert doc["IngestBytes"] == 1024 and doc["IngestDurationMs"] == 3.5
    assert doc["requestId"] == "req-1"


def test_cold_start_is_counted_once_per_process(capsys):
    with obs.invocation("a", "GET /health"):
        pass
    with obs.invocation("b", "GET /health"):
        obs.metric("ModelCacheHit", 1)
    docs = emf_docs(capsys.readouterr().out)
    assert [d.get("ColdStart") for d in docs] == [1, None]  # b's document has only its own metric
    assert docs[1]["ModelCacheHit"] == 1


def test_repeated_metric_becomes_a_value_array(capsys):
    obs.reset_cold_start()
    with obs.invocation("r", "s3:ObjectCreated"):
        for size in (10, 20, 30):
            obs.metric("IngestBytes", size, obs.BYTES)
    [doc] = invocation_docs(capsys.readouterr().out)
    assert doc["IngestBytes"] == [10, 20, 30]
    assert_valid_emf(doc)


def test_metric_outside_an_invocation_is_emitted_at_once(capsys):
    obs.metric("ModelLoadMs", 12.5, obs.MILLISECONDS)
    [doc] = emf_docs(capsys.readouterr().out)
    assert_valid_emf(doc)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Service"]]
    assert doc["ModelLoadMs"] == 12.5


def test_emf_limits_flush_a_full_document_and_drop_nothing(capsys):
    with obs.invocation("r", "op"):
        for i in range(150):  # 150 names: more than one document holds
            obs.metric(f"M{i}", 1)
        for _ in range(150):
            obs.metric("M0", 2)
    docs = emf_docs(capsys.readouterr().out)
    for doc in docs:
        assert_valid_emf(doc)
        assert len(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) <= obs.MAX_METRICS
    names = [m["Name"] for d in docs for m in d["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert sorted(set(names)) == sorted({"ColdStart", *(f"M{i}" for i in range(150))})  # ColdStart on its own
    m0 = []
    for d in docs:
        if "M0" in d:
            m0 += d["M0"] if isinstance(d["M0"], list) else [d["M0"]]
    assert m0 == [1] + [2] * 150  # every value, in order, at most 100 per document
    assert len(docs) == 4 and all(d["requestId"] == "r" for d in docs)  # the cold start's, then three


def test_namespace_is_configured_at_the_edge(capsys):
    obs.configure_metrics("custom-ns")
    try:
        with obs.invocation("r", "op"):
            obs.metric("X", 1)
    finally:
        obs.configure_metrics(obs.SERVICE)
    [doc] = invocation_docs(capsys.readouterr().out)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "custom-ns"


def test_annotate_adds_to_the_summary_line_only_inside_an_invocation(capsys):
    obs.configure_logging("INFO")
    obs.annotate(ignored=True)  # outside: nothing to annotate, no error
    with obs.invocation("r", "op"):
        obs.annotate(ingestStatus="created")
    [summary] = [l for l in json_lines(capsys.readouterr().out) if l.get("message") == "op done"]
    assert summary["ingestStatus"] == "created" and "ignored" not in summary


def test_model_lookup_metrics(capsys):
    from chalicelib.predict import record_model_lookup

    with obs.invocation("r", "POST /predict"):
        record_model_lookup(False, 41.2)
        record_model_lookup(True, 41.2)
    [doc] = invocation_docs(capsys.readouterr().out)
    assert doc["ModelCacheHit"] == [0, 1] and doc["ModelCacheMiss"] == [1, 0]
    assert doc["ModelLoadMs"] == 41.2  # only the miss loaded


def test_module_loggers_reach_the_json_handler_on_the_package_logger(capsys):
    obs.configure_logging("INFO")
    with obs.invocation("req-7", "op"):
        logging.getLogger("chalicelib.events").info("from a module")
    [line] = [l for l in json_lines(capsys.readouterr().out) if l.get("message") == "from a module"]
    assert line["logger"] == "chalicelib.events" and line["requestId"] == "req-7"


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


def test_log_lines_and_metric_documents_are_one_json_line_whatever_their_values():
    cases = [
        ({"a": 1.5, "name": "modèle.onnx", 3: "int key"}, {"a": 1.5, "name": "modèle.onnx", "3": "int key"}),
        ({"huge": 2**70}, {"huge": 2**70}),  # past orjson's 64 bits: the standard library writes it
    ]
    for doc, want in cases:
        line = obs.dumps(doc)
        assert "\n" not in line and json.loads(line) == want
    assert json.loads(obs.dumps({"obj": ValueError("boom")})) == {"obj": "boom"}  # default=str
