"""Real processes on one store folder: writers of the same names vs readers.

Each child is a 'spawn' process with its own record locks, like concurrent
Lambdas on one EFS file system. Invariants are checked from what every
process saw, not from timing.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

import pytest

from tests.support import reliability as R

NAMES = ["shared-a.bin", "shared-b.bin"]
WRITER_MODES = ["ingest", "ingest", "ingest", "stream", "stream", "stream", "route", "route"]
READER_MODES = ["open", "open", "read", "read", "predict", "predict", "route", "route"]


def _join(procs, timeout):
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join()
    assert not hung, "children did not finish (deadlock?)"
    assert [p.exitcode for p in procs] == [0] * len(procs)


def run_writers_and_readers(root, tmp_path, writers, ops, readers):
    ctx = R.spawn()
    go, stop = ctx.Event(), ctx.Event()
    wprocs = [
        ctx.Process(target=R.writer, args=(root, w, NAMES, ops, WRITER_MODES[w % 8], go, str(tmp_path / f"w{w}.json")))
        for w in range(writers)
    ]
    rprocs = [
        ctx.Process(target=R.reader, args=(root, r, NAMES, READER_MODES[r % 8], go, stop, str(tmp_path / f"r{r}.json")))
        for r in range(readers)
    ]
    for p in wprocs + rprocs:
        p.start()
    go.set()
    _join(wprocs, 120 + writers * ops)  # generous: the machine may be shared
    stop.set()
    _join(rprocs, 120)
    wres = [json.loads((tmp_path / f"w{w}.json").read_text()) for w in range(writers)]
    rres = [json.loads((tmp_path / f"r{r}.json").read_text()) for r in range(readers)]
    return wres, rres


def check_invariants(root, wres, rres, writers, ops, readers):
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    assert sum(map(len, wres)) == writers * ops
    # Writers: a version number names exactly one content, and the versions
    # that "created"/"updated" handed out per name are exactly 1..final.
    version_sha: dict[tuple[str, int], str] = {}
    committed = defaultdict(list)
    written = defaultdict(set)
    for results in wres:
        last = {}
        for r in results:
            key = (r["name"], r["version"])
            assert version_sha.setdefault(key, r["sha256"]) == r["sha256"], f"version {key} has two contents"
            written[r["name"]].add(r["sha256"])
            if r["status"] in ("created", "updated"):
                committed[r["name"]].append(r["version"])
            assert r["version"] > last.get(r["name"], 0) or r["status"] == "exists"
            assert r["version"] >= last.get(r["name"], 0), "a writer saw a version go backwards"
            last[r["name"]] = r["version"]
    for name in NAMES:
        m, data = store.read_bytes(ObjectRef("models", name))
        assert R.sha(data) == m.sha256 and len(data) == m.size
        assert m.sha256 in written[name], "final content is not one that was written"
        assert sorted(committed[name]) == list(range(1, m.version + 1)), (
            "final version != number of distinct committed changes"
        )
        assert version_sha[(name, m.version)] == m.sha256
        assert sum(1 for r in sum(wres, []) if r["name"] == name and r["status"] == "created") == 1
    # Readers: every read whole and matching its manifest, versions never go
    # back, and each (version, sha) agrees with what the writers committed.
    reads = 0
    for rr in rres:
        assert rr["errors"] == [], rr["errors"][:3]
        last = {}
        for name, version, manifest_sha, data_sha, ok in rr["seen"]:
            reads += 1
            assert ok and data_sha == manifest_sha, f"torn or mismatching read of {name} v{version}"
            assert version_sha.get((name, version)) == manifest_sha, "read a version no writer committed"
            prev = last.get(name)
            assert prev is None or version > prev[0] or (version == prev[0] and manifest_sha == prev[1])
            last[name] = (version, manifest_sha)
    assert all(len(rr["seen"]) >= 4 for rr in rres), "a reader never got to read"
    assert R.debris(root) == [], "temp or .pending debris left visible"
    return reads


def test_same_names_many_writers_and_readers(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    wres, rres = run_writers_and_readers(root, tmp_path, writers=8, ops=12, readers=8)
    reads = check_invariants(root, wres, rres, 8, 12, 8)
    print(f"16 processes: 96 writes, {reads} reads/predicts")


@pytest.mark.slow
def test_same_names_stress(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    wres, rres = run_writers_and_readers(root, tmp_path, writers=16, ops=60, readers=16)
    check_invariants(root, wres, rres, 16, 60, 16)


def test_different_names_do_not_share_a_lock(tmp_path):
    """While one process holds name A's WRITER lock, another name's ingest
    completes; a writer of A itself times out (so the lock is real)."""
    root = str(tmp_path / "efs")
    os.mkdir(root)
    ctx = R.spawn()
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=R.hold_writer_lock, args=(root, "held.bin", held, release))
    holder.start()
    try:
        assert held.wait(30)
        other = ctx.Process(target=R.put_once, args=(root, "other.bin", 1, 1 << 20, 30, str(tmp_path / "o.json")))
        blocked = ctx.Process(target=R.put_once, args=(root, "held.bin", 2, 1024, 1.0, str(tmp_path / "b.json")))
        other.start(), blocked.start()
        _join([other, blocked], 60)
        assert holder.is_alive(), "the lock holder must still hold the lock"
    finally:
        release.set()
        holder.join(30)
    o = json.loads((tmp_path / "o.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert o["status"] == "created" and o["seconds"] < 15
    assert b == {"error": "EFS_WRITE_FAILED", "stage": "lock", "seconds": b["seconds"]} and b["seconds"] >= 0.9
    # Released: the same name now ingests, and nothing was left behind.
    R.put_once(root, "held.bin", 2, 1024, 5, str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text())["status"] == "created"
    assert R.debris(root) == []


def test_writer_is_not_starved_by_a_stream_of_readers(tmp_path):
    """16 processes re-reading one model back to back hold its COMMIT range
    (shared) nearly all the time; a writer polling for it alone timed out
    (found by the stress run). Through the turnstile it commits promptly."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    root = str(tmp_path / "efs")
    store, ref = Store(root, lock_timeout=20), ObjectRef("models", "hot.bin")
    store.put(ref, [b"v" * 100_000], source="inline")
    ctx = R.spawn()
    go, stop = ctx.Event(), ctx.Event()
    readers = [ctx.Process(target=R.hammer_reads, args=(root, "hot.bin", go, stop)) for _ in range(16)]
    for p in readers:
        p.start()
    go.set()
    try:
        time.sleep(1.5)
        latencies = []
        for k in range(5):
            started = time.monotonic()
            res = store.put(ref, [R.content(("hot", k), 100_000)], source="inline")
            latencies.append(time.monotonic() - started)
            assert res.status == "updated" and res.manifest.version == k + 2
    finally:
        stop.set()
        _join(readers, 60)
    assert max(latencies) < 10, latencies
