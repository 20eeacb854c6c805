"""Duplicates cost nothing (issue 16, finding 5): an event or ``POST /ingest
{"key"}`` for an object already stored, or already being copied, transfers
nothing again. S3 is the moto server behind a proxy that logs (and slows)
requests; events go to the S3 handler itself, concurrently."""

from __future__ import annotations

import json
import threading
from collections import Counter
from urllib.parse import quote

import pytest

from tests.support.faultproxy import Fault
from tests.support.routes import ok, post
from tests.support.s3_events import s3_event


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def proxy(s3_proxy):
    """S3 whose object GETs take 0.3 s (a copy long enough for its
    duplicates to arrive while it runs)."""
    s3_proxy.rule = lambda method, path, n: Fault(delay=0.3) if method == "GET" and "/models/" in path else None
    return s3_proxy


def created(bucket: str, key: str) -> dict:
    return s3_event(bucket, key)


def at_once(n: int, fn) -> list:
    """``fn()`` in ``n`` threads released together; their results."""
    barrier, results, errors = threading.Barrier(n), [], []

    def run():
        barrier.wait()
        try:
            results.append(fn())
        except Exception as exc:  # surfaced below, with the others' results
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_duplicate_events_copy_the_object_once(client, bucket, s3_client, proxy):
    import app

    key = "models/dup.bin"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"D" * 300_000)
    outcomes = at_once(4, lambda: app.on_object_created(created(bucket, key), None))
    statuses = Counter(o["status"] for result in outcomes for o in result)
    assert statuses == {"created": 1, "exists": 3}
    assert len(proxy.requests("GET", key)) == 1  # one transfer, not four
    # Redelivered later: no GET at all.
    assert [o["status"] for o in app.on_object_created(created(bucket, key), None)] == ["exists"]
    assert len(proxy.requests("GET", key)) == 1
    assert ok(client.http.get("/models/dup.bin"))["version"] == 1


def test_an_event_waiting_for_a_copy_of_another_object_still_copies(client, bucket, s3_client, proxy):
    """The in-lock check is by source and ETag: another object of the same
    name (the NFC spelling, behind a copy of the NFD one) is copied."""
    import time

    import app

    nfd, nfc = "models/re\u0301sume\u0301.bin", "models/r\u00e9sum\u00e9.bin"
    s3_client.put_object(Bucket=bucket, Key=nfd, Body=b"1" * 1000)
    s3_client.put_object(Bucket=bucket, Key=nfc, Body=b"2" * 2000)
    first = threading.Thread(target=app.on_object_created, args=(created(bucket, nfd), None))
    first.start()
    while not proxy.requests("GET", quote(nfd)) and first.is_alive():
        time.sleep(0.01)
    assert first.is_alive()  # its copy is running (its GET is held 0.3 s)
    second = app.on_object_created(created(bucket, nfc), None)
    first.join(30)
    assert [o["status"] for o in second] == ["updated"]
    got = ok(client.http.get("/models/r%C3%A9sum%C3%A9.bin"))
    assert got["sizeBytes"] == 2000 and got["version"] == 2


@pytest.fixture
def small_sync(proxy, monkeypatch):
    monkeypatch.setenv("SYNC_INGEST_MAX_BYTES", "1024")
    _reset()
    return proxy


def test_repeated_post_on_a_pending_hand_off_copies_nothing_again(client, bucket, s3_client, small_sync):
    import app

    key = "models/large.bin"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"L" * 4096)
    bodies = []
    for _ in range(3):
        resp = post(client, "/ingest", {"key": key})
        assert resp.status_code == 202, resp.body
        bodies.append(json.loads(resp.body))
    assert len({b["requestId"] for b in bodies}) == 1  # the first hand-off's, answered again
    assert len(small_sync.requests("PUT", key)) == 1  # one CopyObject (the put_object went direct)
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["efs-ml-ingest-request"] == bodies[0]["requestId"]
    # The hand-off's event lands it; its duplicates and the next POST copy nothing.
    outcomes = at_once(3, lambda: app.on_object_created(created(bucket, key), None))
    assert Counter(o["status"] for result in outcomes for o in result) == {"created": 1, "exists": 2}
    assert ok(post(client, "/ingest", {"key": key}))["status"] == "exists"
    assert len(small_sync.requests("GET", key)) == 1 and len(small_sync.requests("PUT", key)) == 1


def test_a_stale_pending_hand_off_is_handed_off_again(client, bucket, s3_client, small_sync, efs_root):
    """A hand-off older than the S3-event function's timeout died without a
    word: a repeated POST copies the key onto itself again."""
    from chalicelib.ingest import HAND_OFF_SECONDS
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store, status

    key = "models/stuck.bin"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"S" * 4096)
    long_ago = status.stamp() - int((HAND_OFF_SECONDS + 1) * 1e9)
    Store(str(efs_root)).status.pending(ObjectRef("models", "stuck.bin"), key, long_ago, "old-request")
    resp = post(client, "/ingest", {"key": key})
    assert resp.status_code == 202 and json.loads(resp.body)["requestId"] != "old-request"
    assert len(small_sync.requests("PUT", key)) == 1
