"""Cold loads through the routes: an honest 503 while a model loads, then 200."""

from __future__ import annotations

import time

import pytest

from chalicelib import edge
from chalicelib.names import ObjectRef
from chalicelib.store import Store
from tests.support.hostile_models import node_chain
from tests.support.routes import post

# 50,000 Neg nodes: a legitimate model whose session creation takes seconds
# here (under the default MAX_MODEL_NODES), far past a 0.5 s request.
SLOW = node_chain(50_000)


@pytest.fixture
def slow_model(efs_root):
    Store(str(efs_root)).put(ObjectRef("models", "slow.onnx"), [SLOW], source="test")
    return "slow.onnx"


def predict(client, model: str):
    return post(client, "/predict", {"fileId": "req-1", "model": model, "inputs": {"x": [1.0]}})


def test_a_load_past_the_request_deadline_is_a_503_and_a_retry_finds_it_warm(client, slow_model, monkeypatch):
    monkeypatch.setenv("REQUEST_TIMEOUT_SECONDS", "0.5")
    edge.reset()
    started = time.monotonic()
    first = predict(client, slow_model)
    answered = time.monotonic() - started
    assert first.status_code == 503, first.json_body
    assert first.json_body["error"] == "MODEL_LOADING" and "slow.onnx" in first.json_body["message"]
    retry_after = int(first.headers["Retry-After"])
    assert 1 <= retry_after <= 10 and first.json_body["retryAfter"] == retry_after
    assert answered < 2.0, answered  # at the request's deadline, not the load's
    # The load went on in the worker: a retry (after Retry-After) gets the answer.
    for _ in range(60):
        time.sleep(0.5)
        later = predict(client, slow_model)
        if later.status_code != 503:
            break
    assert later.status_code == 200, later.json_body
    assert later.json_body["result"]["y"]["data"] == [1.0]  # an even number of negations


def test_a_load_past_its_own_timeout_is_still_stopped_and_reported(client, slow_model, monkeypatch):
    # The load's own bound is the hard one: past MODEL_LOAD_TIMEOUT_SECONDS
    # the worker is killed as before, and the request that waits says so.
    monkeypatch.setenv("MODEL_LOAD_TIMEOUT_SECONDS", "0.3")
    edge.reset()
    first = predict(client, slow_model)
    assert first.status_code == 504, first.json_body
    assert first.json_body["stage"] == "load" and "MODEL_LOAD_TIMEOUT_SECONDS" in first.json_body["message"]
