"""Ingest states on the store: pending and failed records, ordered by attempt, settled by success."""

import os

import pytest

from chalicelib.errors import EfsWriteFailed, FileTooLarge, InvalidRequest, S3Unavailable
from chalicelib.names import ObjectRef
from chalicelib.store import Store
from chalicelib.store.status import MAX_ECHO_CHARS, rejected_id, stamp

REF = ObjectRef("models", "m.bin")


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "efs"), lock_timeout=5)


def status_files(root):
    found = []
    for dirpath, _, files in os.walk(os.path.join(root, ".meta", "status")):
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(found)


def test_no_record_until_an_attempt_is_unsettled(store):
    assert store.status.get(REF) is None and store.status.list("models") == []


def test_pending_then_failed_then_settled(store):
    accepted = stamp()
    record = store.status.pending(REF, "models/m.bin", accepted, "req-1")
    got = store.status.get(REF)
    assert got == record and got.state == "pending" and got.requestId == "req-1" and got.error is None
    store.status.failed(REF, "models/m.bin", S3Unavailable("S3 is down"), stamp(), "req-2")
    got = store.status.get(REF)
    assert got.state == "failed" and got.error == {"error": "PROCESSING_FAILED", "message": "S3 is down"}
    assert got.describe()["error"]["time"] == got.time and got.describe()["stateTime"] == got.time
    store.status.succeeded(REF, stamp())
    assert store.status.get(REF) is None
    assert status_files(store.root) == []  # settled: nothing left, not even a temp


def test_a_newer_attempt_is_not_overwritten_by_an_older_one(store):
    older = stamp()
    store.status.pending(REF, "models/m.bin", stamp(), "newer")
    # An attempt that started before the hand-off fails late: the pending state stands.
    store.status.failed(REF, "models/m.bin", S3Unavailable(), older)
    assert store.status.get(REF).state == "pending"
    # ...and its success (of an older attempt) does not settle the newer one either.
    store.status.succeeded(REF, older)
    assert store.status.get(REF).requestId == "newer"


def test_rejected_keys_are_keyed_by_hash_and_echo_the_key_bounded(store):
    bad = "models/" + "x" * 5000
    store.status.rejected(bad, InvalidRequest("Invalid 'key'"))
    store.status.rejected("models/../evil", InvalidRequest("Invalid 'key'"))
    store.status.rejected("inputs/a\x00b", InvalidRequest("Invalid 'key'"))
    records = store.status.list("models")
    assert [r.id for r in records] == sorted([rejected_id(bad), rejected_id("models/../evil")])
    long = next(r for r in records if r.id == rejected_id(bad))
    assert long.name is None and long.key == bad[:MAX_ECHO_CHARS] and long.state == "failed"
    assert [r.key for r in store.status.list("inputs")] == ["inputs/a\x00b"]
    # Only safe file names were created (40 hex + .json).
    names = [os.path.basename(p) for p in status_files(store.root) if "rejected" in p]
    assert all(len(n) == 45 and n.endswith(".json") for n in names)


def test_list_shows_named_records_and_skips_writers_temps(store):
    store.status.failed(ObjectRef("models", "b.bin"), "models/b.bin", FileTooLarge(10), stamp())
    store.status.pending(ObjectRef("models", "a.bin"), "models/a.bin", stamp(), None)
    open(os.path.join(store.root, ".meta", "status", "models", ".c.bin.json.%s.tmp" % ("0" * 32)), "w").close()
    assert [(r.name, r.state) for r in store.status.list("models")] == [("a.bin", "pending"), ("b.bin", "failed")]


def test_a_write_is_whole_or_not_at_all(store, monkeypatch):
    store.status.pending(REF, "models/m.bin", stamp(), "first")

    def broken_rename(*a, **k):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(EfsWriteFailed):
        store.status.failed(REF, "models/m.bin", S3Unavailable(), stamp())
    monkeypatch.undo()
    assert store.status.get(REF).requestId == "first"
    assert not [p for p in status_files(store.root) if p.endswith(".tmp")]


def test_reclaim_removes_only_old_temps_of_dead_writers(store):
    store.status.pending(REF, "models/m.bin", stamp(), None)
    temp = os.path.join(store.root, ".meta", "status", "models", ".m.bin.json.%s.tmp" % ("a" * 32))
    open(temp, "w").close()
    assert store.reclaim(min_age=3600) == 0 and os.path.exists(temp)
    os.utime(temp, (0, 0))
    assert store.reclaim(min_age=3600) == 1 and not os.path.exists(temp)
    assert store.status.get(REF).state == "pending"


def test_a_torn_record_reads_as_none(store):
    store.status.pending(REF, "models/m.bin", stamp(), None)
    with open(os.path.join(store.root, ".meta", "status", "models", "m.bin.json"), "w") as f:
        f.write("{not json")
    assert store.status.get(REF) is None


def test_the_failure_of_an_accepted_ingest_keeps_the_accepting_request_id(store):
    store.status.pending(REF, "models/m.bin", stamp(), "accepting-request")
    store.status.failed(REF, "models/m.bin", FileTooLarge(10), stamp())  # the S3-event function: no request id
    got = store.status.get(REF)
    assert got.state == "failed" and got.requestId == "accepting-request"


def test_settling_for_a_gone_key_drops_only_that_keys_record(store):
    """A key that no longer exists settles its own record, never one of another key of the name."""
    nfd = "models/m\u0301.bin"
    store.status.pending(REF, nfd, stamp(), "req-1")
    store.status.key_gone(REF, stamp(), "models/m.bin")
    assert store.status.get(REF).key == nfd  # another key's attempt stands
    before = stamp()
    store.status.failed(REF, "models/m.bin", S3Unavailable(), stamp())
    store.status.key_gone(REF, before, "models/m.bin")
    assert store.status.get(REF).state == "failed"  # newer than the settling attempt
    store.status.key_gone(REF, stamp(), "models/m.bin")
    assert store.status.get(REF) is None


def test_rejected_records_are_read_and_cleared_by_key(store, tmp_path):
    bad = "models/../x"
    assert store.status.get_rejected(bad) is None
    store.status.clear_rejected(bad)  # nothing there: nothing to do
    store.status.rejected(bad, InvalidRequest("Invalid 'key'"))
    store.status.rejected("models/.y", InvalidRequest("Invalid 'key'"))
    assert store.status.get_rejected(bad).key == bad
    store.status.clear_rejected(bad)
    assert store.status.get_rejected(bad) is None
    assert [r.key for r in store.status.list("models")] == ["models/.y"]
