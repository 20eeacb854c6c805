"""S3 misbehaving behind a real fault-injecting proxy in front of moto.

Throttling, 5xx and timeouts are retried a bounded number of times with
backoff (botocore standard mode, S3_MAX_ATTEMPTS), then answered with a
clean 500 PROCESSING_FAILED; objects that change or break mid-copy are
refused and nothing is stored.
"""

from __future__ import annotations

import time

import pytest

from tests.support import reliability as R
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.routes import check_error_body

ATTEMPTS = 3
KEY = "models/remote.bin"


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def proxy(bucket, moto_server, monkeypatch):
    p = FaultProxy(moto_server.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", p.endpoint)
    monkeypatch.setenv("S3_MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("S3_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("S3_CONNECT_TIMEOUT", "1")
    _reset()
    yield p
    _reset()
    p.stop()


@pytest.fixture
def backoffs(monkeypatch):
    """Delays botocore's standard retry mode chose (proves it backs off)."""
    from botocore.retries import standard

    delays = []
    real = standard.ExponentialBackoff.delay_amount

    def delay_amount(self, context):
        d = real(self, context)
        delays.append(d)
        return d

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    return delays


def _stored(efs_root):
    from chalicelib.store import Store

    return [(m.key, m.version, m.sha256) for m in Store(str(efs_root)).list("models")]


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=503, code="SlowDown"),
        Fault(status=500, code="InternalError"),
        Fault(delay=1.5),  # longer than S3_READ_TIMEOUT
    ],
    ids=["throttle-503", "internal-500", "timeout"],
)
def test_persistent_failure_is_retried_then_clean_500(proxy, backoffs, http, s3_client, bucket, efs_root, fault):
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"x" * 1000)
    proxy.rule = lambda method, path, n: fault if method == "HEAD" else None
    started = time.monotonic()
    status, body = http.post("/ingest", {"key": KEY})
    elapsed = time.monotonic() - started
    check_error_body(status, body, "s3 persistent")
    assert body["error"] == "PROCESSING_FAILED" and set(body) == {"error", "message", "requestId"}
    times = proxy.requests("HEAD", KEY)
    assert len(times) == ATTEMPTS, "retries must be bounded by S3_MAX_ATTEMPTS"
    assert len(backoffs) == ATTEMPTS - 1 and all(d > 0 for d in backoffs)
    # Each retry waited at least the backoff botocore chose.
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= d * 0.9 for g, d in zip(gaps, backoffs)), (gaps, backoffs)
    assert elapsed < 20
    assert _stored(efs_root) == [] and R.debris(str(efs_root)) == []


def test_transient_503_then_success(proxy, backoffs, http, s3_client, bucket, efs_root):
    data = R.content("remote", 200_000)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=data)
    proxy.rule = lambda method, path, n: Fault(status=503) if method in ("HEAD", "GET") and n == 0 else None
    status, body = http.post("/ingest", {"key": KEY})
    assert status == 200 and body["status"] == "created" and body["sha256"] == R.sha(data), body
    assert len(proxy.requests("HEAD", KEY)) == 2 and len(proxy.requests("GET", KEY)) == 2
    assert len(backoffs) == 2 and proxy.faults == 2


def _seed_v1(http, s3_client, bucket):
    v1 = R.content("v1", 100_000)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=v1)
    status, body = http.post("/ingest", {"key": KEY})
    assert status == 200
    return body


@pytest.mark.parametrize("change", ["replaced", "deleted", "truncated"])
def test_object_changed_mid_copy_is_refused(proxy, http, s3_client, bucket, efs_root, change):
    before = _seed_v1(http, s3_client, bucket)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=R.content("v2", 150_000))
    side = {
        # Between our HEAD and GET someone uploads v3: IfMatch -> 412.
        "replaced": Fault(before=lambda: s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"v3")),
        "deleted": Fault(before=lambda: s3_client.delete_object(Bucket=bucket, Key=KEY)),
        # The connection dies after half the body.
        "truncated": Fault(truncate=0.5),
    }[change]
    proxy.once("GET", side)
    status, body = http.post("/ingest", {"key": KEY})
    check_error_body(status, body, f"s3 {change}")
    if change == "deleted":
        assert body["error"] == "S3_NOT_FOUND" and body["key"] == KEY
    else:
        assert body["error"] == "PROCESSING_FAILED" and "nothing was stored" in body["message"], body
    assert proxy.faults == 1
    # Prior version intact; no partial temp file.
    assert _stored(efs_root) == [(KEY, 1, before["sha256"])]
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    m, data = Store(str(efs_root)).read_bytes(ObjectRef("models", "remote.bin"))
    assert R.sha(data) == before["sha256"] == m.sha256
    assert R.debris(str(efs_root)) == []
