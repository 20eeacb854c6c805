"""Store.delete: order, lock, index, recovery of a delete that died midway."""

import os
import signal
import threading
import time

import pytest

from chalicelib.names import ObjectRef
from chalicelib.store import Store
from tests.support import reliability as R

REF = ObjectRef("models", "m.bin")
INPUT = ObjectRef("inputs", "x.npy")


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "efs"), lock_timeout=5)


def test_delete_removes_object_manifest_and_index(store):
    created = store.put(REF, [b"one"], source="inline").manifest
    gone = store.delete(REF)
    assert gone == created
    assert store.manifest(REF) is None and store.list("models") == []
    assert not os.path.lexists(store.path(REF))
    assert store.lookup_file_id(created.fileId) is None
    assert not os.path.lexists(os.path.join(store.root, ".meta", "ids", created.fileId + ".json"))
    with pytest.raises(FileNotFoundError):
        with store.open(REF):
            pass


def test_delete_of_unknown_name_is_none(store):
    assert store.delete(REF) is None
    store.put(INPUT, [b"x"], source="inline")
    assert store.delete(ObjectRef("inputs", "other.npy")) is None
    assert store.manifest(INPUT) is not None


def test_recreated_name_gets_a_new_file_id_and_the_old_one_names_nothing(store):
    old = store.put(REF, [b"one"], source="inline").manifest
    store.delete(REF)
    new = store.put(REF, [b"one"], source="inline")
    assert new.status == "created" and new.manifest.version == 1
    assert new.manifest.fileId != old.fileId
    assert store.lookup_file_id(old.fileId) is None
    assert store.lookup_file_id(new.manifest.fileId) == REF


def test_before_hook_runs_under_the_lock_and_can_keep_the_object(store):
    store.put(REF, [b"one"], source="inline")
    seen = []
    assert store.delete(REF, before=lambda m: seen.append(m.version) or False) is None
    assert seen == [1] and store.manifest(REF) is not None
    with pytest.raises(RuntimeError):
        store.delete(REF, before=lambda m: (_ for _ in ()).throw(RuntimeError("abort")))
    assert store.manifest(REF) is not None and os.path.exists(store.path(REF))


def test_delete_waits_for_the_writer_of_the_name(store, tmp_path):
    store.put(REF, [b"one"], source="inline")
    ctx = R.spawn()
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=R.hold_writer_lock, args=(store.root, REF.name, held, release))
    holder.start()
    try:
        assert held.wait(10)
        result = []
        t = threading.Thread(target=lambda: result.append(store.delete(REF)))
        t.start()
        time.sleep(0.3)
        assert result == [] and store.manifest(REF) is not None, "delete did not wait for the writer lock"
        release.set()
        t.join(10)
        assert result and result[0] is not None and store.manifest(REF) is None
    finally:
        release.set()
        holder.join(10)


def test_delete_finishes_a_dead_writers_commit_first(store):
    store.put(REF, [b"one"], source="inline")
    p = R.spawn().Process(target=R.crash_at, args=(store.root, REF.name, "v2", 500, "after-data-rename"))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    gone = store.delete(REF)
    assert gone is not None and gone.version == 2  # rolled forward, then deleted
    assert store.manifest(REF) is None and R.debris(store.root) == []
    assert not os.path.lexists(store.path(REF))


@pytest.mark.parametrize("point", ["after-manifest-unlink", "after-index-unlink"])
def test_sigkill_mid_delete_leaves_nothing_visible_and_reclaim_sweeps_the_rest(store, point):
    created = store.put(REF, [R.content("v1", 3000)], source="inline").manifest
    p = R.spawn().Process(target=R.crash_delete_at, args=(store.root, REF.name, point))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL, "the hook did not fire"
    # The commit point passed: nothing is served, listed or indexed...
    assert store.manifest(REF) is None and store.list("models") == []
    stale = store.lookup_file_id(created.fileId)  # a left-over entry leads to no manifest
    assert stale is None or store.manifest(stale) is None
    with pytest.raises(FileNotFoundError):
        with store.open(REF):
            pass
    # ...but the object itself is left over, until the sweep takes it.
    assert os.path.exists(store.path(REF))
    assert store.reclaim(min_age=3600) == 0, "a young leftover must be spared"
    assert store.reclaim() == 1
    assert not os.path.lexists(store.path(REF))
    again = store.put(REF, [b"again"], source="inline")
    assert again.status == "created" and store.lookup_file_id(created.fileId) is None


def test_sigkill_before_the_manifest_unlink_keeps_the_whole_object(store):
    created = store.put(REF, [b"one"], source="inline").manifest
    p = R.spawn().Process(target=R.crash_delete_at, args=(store.root, REF.name, "before-manifest-unlink"))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    assert store.manifest(REF) == created
    assert store.read_bytes(REF)[1] == b"one" and store.lookup_file_id(created.fileId) == REF
    assert store.reclaim() == 0 and os.path.exists(store.path(REF))


def test_reclaim_spares_an_object_being_committed(store):
    # An object with its intent (between swap and publish) is not a delete's leftover.
    p = R.spawn().Process(target=R.crash_at, args=(store.root, REF.name, "v1", 500, "after-data-rename"))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    store.reclaim()
    assert store.manifest(REF) is not None and store.read_bytes(REF)[1] == R.content("v1", 500)
