"""The model cache's loader thread: a load outlives the request that started it, within its own bounds."""

from __future__ import annotations

import time

import pytest

from chalicelib import deadline
from chalicelib.errors import DeadlineExceeded, ModelLoading
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits
from chalicelib.store import Store
from tests.support.hostile_models import node_chain

SLOW = node_chain(50_000)  # seconds of session creation here


@pytest.fixture
def slow(efs_root):
    store = Store(str(efs_root))
    ref = ObjectRef("models", "slow.onnx")
    store.put(ref, [SLOW], source="test")
    return store, ref


def test_a_load_that_fails_after_its_request_gave_up_is_reported_to_the_next_request_once(slow):
    store, ref = slow
    cache = ModelCache(1 << 30, Limits(load_timeout_seconds=1.0))
    with deadline.bounded(0.2), pytest.raises(ModelLoading) as loading:
        cache.get(store, ref)
    assert loading.value.retry_after >= 1
    time.sleep(2.5)  # the load has passed its own 1 s bound by now and was stopped
    with deadline.bounded(5.0), pytest.raises(DeadlineExceeded) as stopped:
        cache.get(store, ref)
    assert stopped.value.stage == "load" and "MODEL_LOAD_TIMEOUT_SECONDS" in stopped.value.message
    # Reported once: the next request starts a fresh load (which answers 503 again).
    with deadline.bounded(0.2), pytest.raises(ModelLoading):
        cache.get(store, ref)


def test_concurrent_requests_join_one_load_and_each_answers_by_its_own_deadline(slow):
    store, ref = slow
    cache = ModelCache(1 << 30, Limits(load_timeout_seconds=60.0))
    for _ in range(2):
        started = time.monotonic()
        with deadline.bounded(0.2), pytest.raises(ModelLoading):
            cache.get(store, ref)
        assert time.monotonic() - started < 1.0
    assert len(cache._loading) == 1  # one load in flight, joined, not restarted
    cached, hit = cache.get(store, ref)  # no deadline: waits for that same load
    assert hit and cached.runner.valid()
