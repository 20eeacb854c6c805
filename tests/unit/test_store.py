"""The store's contract on a real folder: atomicity, versions, recovery, symlinks."""
import hashlib
import json
import os

import pytest

from chalicelib.errors import EfsWriteFailed, FileTooLarge
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
    assert set(doc) == {"fileId", "key", "size", "sha256", "version", "source", "etag", "created", "updated",
                        "inode", "mtimeNs"}
    st = os.stat(store.path(REF))
    assert (doc["inode"], doc["mtimeNs"]) == (st.st_ino, st.st_mtime_ns)  # the object's identity at commit
