"""Every request and S3 event ends before its function (or the gateway) does.

A slow S3 behind the real fault proxy, and short deadlines: the answer is our
504 TIMEOUT body, in time, never a gateway 504 or a Lambda timeout
(issue 9, finding 5). Store lock waits are covered by the store's own tests.
"""

from __future__ import annotations

import time

import pytest

from tests.support.faultproxy import Fault, FaultProxy
from tests.support.routes import check_error_body

KEY = "models/slow.bin"


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def slow_s3(bucket, moto_server, monkeypatch):
    """S3 through a proxy that stalls HEADs for 10 s; default S3 timeouts (30 s x 5)."""
    p = FaultProxy(moto_server.endpoint).start()
    p.rule = lambda method, path, n: Fault(delay=10.0) if method == "HEAD" else None
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", p.endpoint)
    for name in ("S3_READ_TIMEOUT", "S3_CONNECT_TIMEOUT", "S3_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    _reset()
    yield p
    _reset()
    p.stop()


def test_http_request_past_its_deadline_answers_504_timeout_in_time(slow_s3, http, s3_client, bucket, monkeypatch):
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"x" * 1000)
    monkeypatch.setenv("REQUEST_TIMEOUT_SECONDS", "2")
    _reset()
    started = time.monotonic()
    status, body = http.post("/ingest", {"key": KEY})
    elapsed = time.monotonic() - started
    check_error_body(status, body, "deadline")
    assert status == 504 and body["error"] == "TIMEOUT" and body["stage"] == "s3", body
    assert elapsed < 3.0, elapsed


def test_s3_event_runs_within_the_lambda_remaining_time(slow_s3, s3_client, bucket, efs_root):
    from chalicelib.edge import get_settings, get_store
    from chalicelib.events import RetryableEventError, handle_event

    class Context:
        """What Lambda hands the function: 3 s left."""

        def __init__(self) -> None:
            self.ends = time.monotonic() + 3.0

        def get_remaining_time_in_millis(self) -> int:
            return int((self.ends - time.monotonic()) * 1000)

    s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"x" * 1000)
    event = {"Records": [{"s3": {"bucket": {"name": bucket}, "object": {"key": KEY}}}]}
    started = time.monotonic()
    with pytest.raises(RetryableEventError):  # Lambda retries the event later
        handle_event(get_store(), get_settings(), event, Context())
    assert time.monotonic() - started < 2.5  # 3 s less DEADLINE_MARGIN_SECONDS (1 s)


def test_s3_attempts_and_timeouts_fit_the_time_left():
    from chalicelib import s3
    from chalicelib.config import load_settings

    settings = load_settings({})
    for seconds in (0.3, 1.2, 3.0, 10.0, 27.0, 60.0, 200.0):
        attempts, connect, read = s3.plan(settings, seconds)
        assert s3.worst_case_seconds(attempts, connect, read) <= max(seconds, 0.5)
        assert 1 <= attempts <= settings.s3_max_attempts
    # A gateway-bound request keeps retries (shorter reads), not one long try.
    assert s3.plan(settings, 27.0)[0] >= 2


def test_invocation_budget_comes_from_the_lambda_context():
    from chalicelib import deadline

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 10_000

    assert deadline.invocation_seconds(Context(), 1.0, 27.0) == 9.0
    assert deadline.invocation_seconds(Context(), 1.0, 5.0) == 5.0
    assert deadline.invocation_seconds(None, 1.0, 27.0) == 27.0
    assert deadline.invocation_seconds(None, 1.0, None) is None
