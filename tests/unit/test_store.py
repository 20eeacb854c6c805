"""The store's contract on a real folder: atomicity, versions, recovery, symlinks."""

import hashlib
import json
import os

import pytest

from chalicelib.errors import EfsWriteFailed, FileTooLarge, StoreCorrupt
from chalicelib.names import ObjectRef
from chalicelib.store import SizeMismatch, Store

REF = ObjectRef("models", "m.bin")


def debris(root):
    """Temp and pending files anywhere in the store."""
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files if f.endswith((".tmp", ".pending"))]
    return found


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "efs"), lock_timeout=5)


def test_create_exists_update(store):
    r1 = store.put(REF, [b"one"], source="inline")
    assert r1.status == "created" and r1.manifest.version == 1
    assert r1.manifest.sha256 == hashlib.sha256(b"one").hexdigest()
    r2 = store.put(REF, [b"o", b"ne"], source="inline")
    assert r2.status == "exists" and r2.manifest == r1.manifest
    r3 = store.put(REF, [b"two"], source="inline")
    assert r3.status == "updated" and r3.manifest.version == 2
    assert r3.manifest.fileId == r1.manifest.fileId
    assert r3.manifest.created == r1.manifest.created
    with open(store.path(REF), "rb") as f:
        assert f.read() == b"two"
    assert store.lookup_file_id(r1.manifest.fileId) == REF
    assert debris(store.root) == []


def test_open_returns_matching_pair(store):
    store.put(REF, [b"abc"], source="inline")
    with store.open(REF) as (m, f):
        assert hashlib.sha256(f.read()).hexdigest() == m.sha256
    with pytest.raises(FileNotFoundError):
        with store.open(ObjectRef("models", "missing")):
            pass


def test_reader_keeps_its_version_while_a_writer_replaces_it(store):
    store.put(REF, [b"old" * 1000], source="inline")
    with store.open(REF) as (m, f):
        store.put(REF, [b"new"], source="inline")
        assert f.read() == b"old" * 1000 and m.version == 1
    assert store.manifest(REF).version == 2


def test_too_large_while_streaming_leaves_nothing(store):
    store.put(REF, [b"keep"], source="inline")
    with pytest.raises(FileTooLarge):
        store.put(REF, [b"x" * 10] * 5, source="inline", max_bytes=25)
    assert open(store.path(REF), "rb").read() == b"keep"
    assert debris(store.root) == []


def test_short_stream_is_refused(store):
    with pytest.raises(SizeMismatch):  # a storage error: ingest says what it means (S3ObjectChanged)
        store.put(REF, [b"abc"], source="s3://b/models/m.bin", expected_size=10)
    assert store.manifest(REF) is None and not os.path.exists(store.path(REF))
    assert debris(store.root) == []


def test_failing_source_leaves_previous_version(store):
    store.put(REF, [b"v1"], source="inline")

    def broken():
        yield b"partial"
        raise RuntimeError("source died")

    with pytest.raises(RuntimeError):
        store.put(REF, broken(), source="inline")
    assert open(store.path(REF), "rb").read() == b"v1"
    assert store.manifest(REF).version == 1
    assert debris(store.root) == []


def test_dead_writer_temp_is_replaced_by_next_writer(store):
    """A writer's temp files have fixed names (only WRITER's holder writes
    them): the next writer of the name replaces a dead one's, with no
    directory listing. Anything else is left to reclaim()."""
    from chalicelib.store import commit

    store.put(REF, [b"v1"], source="inline")
    stale = os.path.join(store.root, "models", commit.data_temp("m.bin"))
    stale_manifest = os.path.join(store.root, ".meta", "models", commit.manifest_temp("m.bin"))
    old_style = os.path.join(store.root, "models", ".m.bin." + "a" * 32 + ".tmp")  # a random-named temp
    other = os.path.join(store.root, "models", ".m.bin.x." + "b" * 32 + ".tmp")  # another name's temp
    for p in (stale, stale_manifest, old_style, other):
        open(p, "wb").write(b"junk")
    assert store.put(REF, [b"v2"], source="inline").status == "updated"
    assert open(store.path(REF), "rb").read() == b"v2"
    assert not os.path.exists(stale) and not os.path.exists(stale_manifest)
    assert os.path.exists(other) and os.path.exists(old_style)
    assert store.reclaim() == 2
    assert debris(store.root) == []


def _crash_between_renames(store, data):
    """Leave the state a writer killed between the object and manifest renames leaves."""
    real_publish = store._publish
    store._publish = lambda ref: (_ for _ in ()).throw(SystemExit("killed"))
    with pytest.raises(SystemExit):
        store.put(REF, [data], source="inline")
    store._publish = real_publish


def test_crash_after_object_swap_rolls_forward(store):
    store.put(REF, [b"v1"], source="inline")
    _crash_between_renames(store, b"v2")
    assert os.path.exists(os.path.join(store.root, ".meta", "models", "m.bin.pending"))
    # A reader finishes the commit rather than pairing v2 bytes with the v1 manifest.
    with store.open(REF) as (m, f):
        assert (m.version, f.read()) == (2, b"v2")
    assert debris(store.root) == []


def test_crash_before_object_swap_rolls_back(store):
    store.put(REF, [b"v1"], source="inline")
    real_rename = os.rename
    calls = []

    def rename_then_die(src, dst):
        calls.append(dst)
        if dst == store.path(REF):
            raise SystemExit("killed before swap")
        return real_rename(src, dst)

    os.rename = rename_then_die
    try:
        with pytest.raises(SystemExit):
            store.put(REF, [b"v2"], source="inline")
    finally:
        os.rename = real_rename
    # SystemExit is not an OSError: the temp stays, as after a SIGKILL.
    m = store.put(REF, [b"v3"], source="inline").manifest
    assert m.version == 2 and open(store.path(REF), "rb").read() == b"v3"
    assert debris(store.root) == []


def test_symlinked_object_is_never_followed(store, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    store.put(REF, [b"v1"], source="inline")
    os.unlink(store.path(REF))
    os.symlink(outside, store.path(REF))
    with pytest.raises(FileNotFoundError):
        with store.open(REF):
            pass
    store.put(REF, [b"v2"], source="inline")  # replaces the link itself
    assert outside.read_bytes() == b"secret"
    assert not os.path.islink(store.path(REF))


def test_symlinked_directory_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.makedirs(store.root)
    os.symlink(outside, os.path.join(store.root, "models"))
    with pytest.raises(EfsWriteFailed) as exc:
        store.put(REF, [b"x"], source="inline")
    assert exc.value.stage == "open"
    assert list(outside.iterdir()) == []


def test_write_error_is_typed_and_leaves_previous(store, monkeypatch):
    store.put(REF, [b"v1"], source="inline")
    from chalicelib.store import fs

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs, "write_all", full)
    with pytest.raises(EfsWriteFailed) as exc:
        store.put(REF, [b"v2"], source="inline")
    assert exc.value.stage == "write"
    assert "No space left" in exc.value.message and store.root not in exc.value.message
    monkeypatch.undo()
    assert open(store.path(REF), "rb").read() == b"v1"
    assert debris(store.root) == []


def test_list_and_health(store):
    store.put(ObjectRef("models", "b"), [b"2"], source="inline")
    store.put(ObjectRef("models", "a"), [b"1"], source="inline")
    assert [m.key for m in store.list("models")] == ["models/a", "models/b"]
    health = store.health()
    assert health["writable"] and health["exists"]


def test_manifest_is_json_with_documented_fields(store):
    store.put(REF, [b"abc"], source="inline")
    with open(os.path.join(store.root, ".meta", "models", "m.bin.json")) as f:
        doc = json.load(f)
    assert set(doc) == {
        "fileId",
        "key",
        "size",
        "sha256",
        "version",
        "source",
        "etag",
        "created",
        "updated",
        "inode",
        "mtimeNs",
        "previous",  # versions (docs/design/versions.md)
        "latest",
        "versionCreated",
        "signature",
        "format",
        "scan",  # ingest's scan of a model (docs/cold-loads.md)
    }
    st = os.stat(store.path(REF))
    assert (doc["inode"], doc["mtimeNs"]) == (st.st_ino, st.st_mtime_ns)  # the object's identity at commit


# -- identity, healing, lock-free reads (issue 9 #10, issue 10) --------------
def _tamper_in_place(path, data):
    # File times move by the kernel's tick: damage in the tick of the commit
    # itself would keep the mtime (real damage comes long after).
    import time

    time.sleep(0.05)
    with open(path, "r+b") as f:
        f.write(data)


def _tamper_by_rename(path, data):
    tmp = path + ".x"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


@pytest.mark.parametrize("tamper", [_tamper_in_place, _tamper_by_rename], ids=["in-place", "renamed-over"])
@pytest.mark.parametrize("how", ["put", "put_bytes"])
def test_same_size_mismatch_is_healed_by_reingesting(store, tamper, how):
    """Bytes that differ from the manifest at the same size (tampering, or a
    rename whose reply was lost) are rewritten by the next ingest of the
    right content, detected from the identity recorded at commit."""
    first = store.put(REF, [b"abc"], source="inline").manifest
    tamper(store.path(REF), b"xyz")
    with pytest.raises(StoreCorrupt):
        store.read_bytes(REF)  # the damage is real
    res = store.put(REF, [b"abc"], source="inline") if how == "put" else store.put_bytes(REF, b"abc", source="inline")
    assert res.status == "updated" and res.manifest.version == 2 and res.manifest.fileId == first.fileId
    assert store.read_bytes(REF)[1] == b"abc"
    again = store.put_bytes(REF, b"abc", source="inline")
    assert again.status == "exists" and again.manifest == res.manifest
    assert debris(store.root) == []


def test_manifest_without_identity_is_still_served(store):
    """A manifest written by the first store (no inode/mtimeNs) takes the
    locked path; nothing is refused or rewritten for it."""
    m = store.put(REF, [b"abc"], source="inline").manifest
    path = os.path.join(store.root, ".meta", "models", "m.bin.json")
    doc = json.loads(open(path).read())
    del doc["inode"], doc["mtimeNs"]
    open(path, "w").write(json.dumps(doc))
    assert store.read_bytes(REF)[1] == b"abc"
    assert store.put_bytes(REF, b"abc", source="inline").status == "exists"
    assert store.put(REF, [b"abd"], source="inline").manifest.version == m.version + 1


def test_legacy_index_and_intent_are_understood(store):
    """fileId index files and intents in the first store's formats."""
    m = store.put(REF, [b"v1"], source="inline").manifest
    ids = os.path.join(store.root, ".meta", "ids")
    os.unlink(os.path.join(ids, m.fileId + ".json"))
    open(os.path.join(ids, m.fileId + ".json"), "w").write(json.dumps({"kind": "models", "name": "m.bin"}))
    assert store.lookup_file_id(m.fileId) == REF
    # An old-format intent whose temp is gone: the swap happened, roll forward.
    v2 = dict(
        json.loads(open(os.path.join(store.root, ".meta", "models", "m.bin.json")).read()),
        version=2,
        sha256=hashlib.sha256(b"v2").hexdigest(),
    )
    del v2["inode"], v2["mtimeNs"]
    pending = os.path.join(store.root, ".meta", "models", "m.bin.pending")
    open(pending, "w").write(json.dumps({"temp": ".m.bin." + "c" * 32 + ".tmp", "manifest": v2}))
    _tamper_by_rename(store.path(REF), b"v2")  # the swap the old writer made
    with store.open(REF) as (got, f):
        assert got.version == 2 and f.read() == b"v2"
    assert debris(store.root) == []


def _hold_all_locks(root, name, held, release):
    """Hold every lock byte of ``name`` (as a writer mid-commit does) until released."""
    from chalicelib.store import locks

    s = Store(root)
    with s._locked(REF_OF(name), (locks.WRITER, locks.TURNSTILE, locks.COMMIT), timeout=5):
        held.set()
        release.wait(30)


def REF_OF(name):  # noqa: N802 - a constructor-like helper for the child process
    return ObjectRef("models", name)


def test_readers_take_no_lock(store):
    """While another process holds the name's WRITER and COMMIT locks, a
    reader still gets the committed pair at once (it checks identity
    instead of locking); a writer of that name waits."""
    import multiprocessing

    store.put(REF, [b"committed"], source="inline")
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_all_locks, args=(store.root, "m.bin", held, release))
    holder.start()
    try:
        assert held.wait(30)
        quick = Store(store.root, lock_timeout=0.2)
        with quick.open(REF) as (m, f):
            assert f.read() == b"committed" and m.version == 1
        assert quick.read_bytes(REF)[1] == b"committed"
        with pytest.raises(EfsWriteFailed) as exc:
            quick.put(REF, [b"new"], source="inline")
        assert exc.value.stage == "lock"
    finally:
        release.set()
        holder.join(30)


def test_lock_wait_ends_at_the_invocation_deadline(store):
    """A writer waiting for another writer gives up when the invocation's
    deadline (not the lock timeout) runs out: 504 TIMEOUT, stage 'lock'."""
    import multiprocessing
    import time

    from chalicelib import deadline
    from chalicelib.errors import DeadlineExceeded

    store.put(REF, [b"v1"], source="inline")
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_all_locks, args=(store.root, "m.bin", held, release))
    holder.start()
    try:
        assert held.wait(30)
        patient = Store(store.root, lock_timeout=60)
        started = time.monotonic()
        with deadline.bounded(0.5), pytest.raises(DeadlineExceeded) as exc:
            patient.put(REF, [b"v2"], source="inline")
        assert exc.value.stage == "lock" and time.monotonic() - started < 10
    finally:
        release.set()
        holder.join(30)
    assert store.read_bytes(REF)[1] == b"v1" and debris(store.root) == []


def test_reclaim_spares_young_debris_and_live_writers(store):
    """reclaim(min_age) removes only files older than min_age, and never a
    name whose writer is alive (its lock is held), however old its files."""
    import time

    from chalicelib.store import commit

    store.put(REF, [b"v1"], source="inline")
    stale = os.path.join(store.root, "models", ".a.bin." + "d" * 32 + ".tmp")
    open(stale, "wb").write(b"x" * 1000)
    assert store.reclaim(min_age=60) == 0 and os.path.exists(stale)
    old = time.time() - 120
    os.utime(stale, (old, old))
    live = os.path.join(store.root, "models", commit.data_temp("m.bin"))
    open(live, "wb").write(b"being written")
    os.utime(live, (old, old))
    with store._writer_lock(REF):
        # From another thread of this process the lock is just as held.
        import threading

        got = []
        t = threading.Thread(target=lambda: got.append(Store(store.root).reclaim(min_age=60)))
        t.start()
        t.join(30)
    assert got == [1] and not os.path.exists(stale) and os.path.exists(live)
    assert store.reclaim(min_age=60) == 1 and debris(store.root) == []
