"""Parallel ranged GETs (``s3.stream``) against the real moto server, with
faults from a real proxy: order, IfMatch on every part, retries of a part
that breaks off, refusal of an object replaced mid-copy, and no thread left
behind whatever ends the copy."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading

import pytest

from tests.support.faultproxy import Fault, FaultProxy
from tests.support.routes import error, ok, post

PART = 64 * 1024
CONNECTIONS = 3
KEY = "models/big model (v2).bin"
DATA = os.urandom(PART * 9 + 12_345)  # 10 parts, the last one short


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def ranged(bucket, monkeypatch):
    monkeypatch.setenv("S3_PART_BYTES", str(PART))
    monkeypatch.setenv("S3_CONNECTIONS", str(CONNECTIONS))
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "3")
    _reset()
    yield bucket
    _reset()


@pytest.fixture
def proxy(ranged, moto_server, monkeypatch):
    p = FaultProxy(moto_server.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", p.endpoint)
    _reset()
    yield p
    _reset()
    p.stop()


@pytest.fixture
def gets(monkeypatch):
    """Every GetObject the service's client sends: its parameters, the thread
    it ran on, and whether that thread saw the invocation deadline."""
    from chalicelib import deadline, s3

    calls: list[dict] = []
    lock = threading.Lock()

    def record(params, **_):
        with lock:
            calls.append({**params, "thread": threading.current_thread().name, "deadline": deadline.has_deadline()})

    s3.client(_settings()).meta.events.register("provide-client-params.s3.GetObject", record)
    # Near a deadline (every HTTP request has one) calls go through clients
    # with fewer attempts and shorter timeouts: record theirs too.
    make_client = s3._make_client

    def recording_client(*args, **kwargs):
        made = make_client(*args, **kwargs)
        made.meta.events.register("provide-client-params.s3.GetObject", record)
        return made

    monkeypatch.setattr(s3, "_make_client", recording_client)
    return calls


def part_threads() -> list[threading.Thread]:
    from chalicelib.s3 import PART_THREAD_PREFIX

    return [t for t in threading.enumerate() if t.name.startswith(PART_THREAD_PREFIX)]


def _stored(efs_root):
    from chalicelib.store import Store

    return [(m.key, m.version, m.sha256) for m in Store(str(efs_root)).list("models")]


def test_parts_arrive_in_order_each_with_if_match(client, ranged, s3_client, efs_root, gets):
    s3_client.put_object(Bucket=ranged, Key=KEY, Body=DATA)
    etag = s3_client.head_object(Bucket=ranged, Key=KEY)["ETag"]
    body = ok(post(client, "/ingest", {"key": KEY}))
    assert body["sha256"] == hashlib.sha256(DATA).hexdigest() and body["sizeBytes"] == len(DATA)
    assert (efs_root / "models" / "big model (v2).bin").read_bytes() == DATA
    assert len(gets) == 10 and all(g["IfMatch"] == etag for g in gets)
    ranges = sorted((int(a), int(b)) for a, b in (g["Range"][len("bytes=") :].split("-") for g in gets))
    assert ranges[0][0] == 0 and ranges[-1][1] == len(DATA) - 1
    assert all(b - a + 1 == PART for a, b in ranges[:-1])
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(ranges))  # no gap, no overlap
    assert {g["thread"].split("_")[0] for g in gets} == {"s3-part"} and part_threads() == []


MIB = 1024 * 1024


@pytest.mark.parametrize(
    "size,part",
    [
        (64 * MIB, 11 * MIB),  # fixed 16 MiB parts: 4 streams of 6
        (48 * MIB, 8 * MIB),  # the threshold: 6 x 8 MiB
        (20 * MIB, 8 * MIB),  # under it: as many 8 MiB parts as it fills
        (8 * MIB, 8 * MIB),  # one part: a plain GET
        (1024 * MIB, 16 * MIB),  # large: S3_PART_BYTES, the buffers' bound
        (70 * 64 * 1024, 64 * 1024),  # S3_PART_BYTES under 8 MiB is the part, as configured
    ],
)
def test_parts_are_sized_to_the_object(size, part):
    from chalicelib.s3 import part_size

    max_part = 64 * 1024 if part == 64 * 1024 else 16 * MIB
    assert part_size(size, max_part, 6) == part


def test_an_object_over_the_threshold_uses_every_connection(bucket, s3_client, gets, monkeypatch):
    """Parts of 8 MiB up to S3_PART_BYTES (16 MiB, the default), 3 connections
    (6 by default: 3 halve the test's memory): a 25 MiB key is three ranged
    GETs of 8-16 MiB (one per connection: all are submitted at once), not
    two of 16 and 9 MiB."""
    from chalicelib import s3

    monkeypatch.setenv("S3_CONNECTIONS", "3")
    _reset()
    data = os.urandom(25 * MIB)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=data)
    info = s3.head(_settings(), bucket, KEY)
    digest = hashlib.sha256()
    for chunk in s3.stream(_settings(), bucket, KEY, info):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    ranges = sorted((int(a), int(b)) for a, b in (g["Range"][len("bytes=") :].split("-") for g in gets))
    assert len(ranges) == 3 and ranges[-1][1] == len(data) - 1
    assert all(8 * MIB <= b - a + 1 <= 16 * MIB for a, b in ranges[:-1])
    _reset()


def test_small_object_is_one_plain_get(client, ranged, s3_client, gets):
    s3_client.put_object(Bucket=ranged, Key="models/small.bin", Body=b"s" * PART)  # exactly one part
    assert ok(post(client, "/ingest", {"key": "models/small.bin"}))["sizeBytes"] == PART
    assert len(gets) == 1 and "Range" not in gets[0] and gets[0]["IfMatch"]


def test_part_threads_see_the_deadline(ranged, s3_client, gets):
    from chalicelib import deadline, s3

    s3_client.put_object(Bucket=ranged, Key=KEY, Body=DATA)
    info = s3.head(_settings(), ranged, KEY)
    with deadline.bounded(60):
        assert b"".join(s3.stream(_settings(), ranged, KEY, info)) == DATA
    assert gets and all(g["deadline"] for g in gets)
    with deadline.bounded(0):  # already past: no part is even requested
        from chalicelib.errors import DeadlineExceeded

        with pytest.raises(DeadlineExceeded):
            b"".join(s3.stream(_settings(), ranged, KEY, info))
    assert len(gets) == 10 and part_threads() == []


def test_abandoned_stream_leaves_no_thread(ranged, s3_client):
    from chalicelib import s3

    s3_client.put_object(Bucket=ranged, Key=KEY, Body=DATA)
    chunks = s3.stream(_settings(), ranged, KEY, s3.head(_settings(), ranged, KEY))
    first = next(chunks)
    assert first and DATA.startswith(first)
    assert part_threads(), "parts download in threads"
    chunks.close()
    assert part_threads() == []


def _counting_buffers(monkeypatch):
    from chalicelib import s3

    made = []

    class Counted(s3._PartBuffer):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            made.append(self)

    monkeypatch.setattr(s3, "_PartBuffer", Counted)
    return made


def test_part_buffers_are_reused_once_their_chunks_are_dropped(ranged, s3_client, monkeypatch):
    from chalicelib import s3

    made = _counting_buffers(monkeypatch)
    s3_client.put_object(Bucket=ranged, Key=KEY, Body=DATA)
    sha, size = hashlib.sha256(), 0
    for chunk in s3.stream(_settings(), ranged, KEY, s3.head(_settings(), ranged, KEY)):
        assert isinstance(chunk, memoryview) and chunk.readonly  # nobody can write into a pooled buffer
        sha.update(chunk)
        size += len(chunk)
    assert sha.hexdigest() == hashlib.sha256(DATA).hexdigest() and size == len(DATA)
    assert len(made) == CONNECTIONS + 1  # 10 parts through 4 buffers: downloading ones and the one consumed


def test_kept_chunks_are_never_overwritten(ranged, s3_client, monkeypatch):
    from chalicelib import s3

    made = _counting_buffers(monkeypatch)
    s3_client.put_object(Bucket=ranged, Key=KEY, Body=DATA)
    kept = list(s3.stream(_settings(), ranged, KEY, s3.head(_settings(), ranged, KEY)))  # every chunk held to the end
    assert b"".join(kept) == DATA
    assert len(made) == 10  # a buffer still referenced is not reused: a new one instead
    del kept
    assert all(b.leases == 0 for b in made)


def test_part_cut_short_once_is_fetched_again(client, proxy, s3_client, efs_root):
    s3_client.put_object(Bucket=proxy_bucket(proxy, s3_client), Key=KEY, Body=DATA)
    proxy.rule = lambda method, path, n: Fault(truncate=0.5) if method == "GET" and n == 4 else None
    body = ok(post(client, "/ingest", {"key": KEY}))
    assert body["sha256"] == hashlib.sha256(DATA).hexdigest() and proxy.faults == 1
    assert len(proxy.requests("GET", "big%20model%20%28v2%29.bin")) == 11
    assert part_threads() == []


def test_part_that_keeps_breaking_fails_cleanly(client, proxy, s3_client, efs_root, gets):
    bucket = proxy_bucket(proxy, s3_client)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"v1")
    before = ok(post(client, "/ingest", {"key": KEY}))
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=DATA)
    gets.clear()
    # Every GET breaks off halfway: the first part to use up its 3 attempts ends the copy.
    proxy.rule = lambda method, path, n: Fault(truncate=0.5) if method == "GET" else None
    body = error(post(client, "/ingest", {"key": KEY}), 500, "PROCESSING_FAILED")
    assert "interrupted 3 times" in body["message"] and "nothing was stored" in body["message"]
    per_part: dict[str, int] = {}
    for g in gets:
        per_part[g["Range"]] = per_part.get(g["Range"], 0) + 1
    assert max(per_part.values()) == 3 and len(per_part) <= 10  # bounded: never more than 3 a part
    assert _stored(efs_root) == [(KEY, 1, before["sha256"])]
    assert part_threads() == []


def _settings():
    from chalicelib import edge

    return edge.get_settings()


def proxy_bucket(proxy, s3_client):
    from chalicelib.edge import get_settings

    return get_settings().bucket


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_object_changed_mid_copy_is_refused(client, proxy, s3_client, efs_root, change):
    bucket = proxy_bucket(proxy, s3_client)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=b"v1")
    before = ok(post(client, "/ingest", {"key": KEY}))
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=DATA)
    side = {
        # A new version lands after some parts were read: the next part's IfMatch -> 412.
        "replaced": lambda: s3_client.put_object(Bucket=bucket, Key=KEY, Body=DATA[::-1]),
        "deleted": lambda: s3_client.delete_object(Bucket=bucket, Key=KEY),
    }[change]
    fired = []

    def rule(method, path, n):
        if method == "GET" and n == 5 and not fired:
            fired.append(n)
            return Fault(before=side)
        return None

    proxy.rule = rule
    status = post(client, "/ingest", {"key": KEY})
    if change == "replaced":
        body = error(status, 500, "PROCESSING_FAILED")
        assert "nothing was stored" in body["message"]
    else:
        assert error(status, 404, "S3_NOT_FOUND")["key"] == KEY
    assert _stored(efs_root) == [(KEY, 1, before["sha256"])]
    assert part_threads() == []
