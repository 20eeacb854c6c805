"""The store keeps a model's last versions, each addressable; rollback (issue 18, finding 5).

Layout and protocol: docs/design/versions.md.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from chalicelib.errors import NotFound, StoreCorrupt
from chalicelib.names import ObjectRef
from chalicelib.store import Store
from chalicelib.store.errors import VersionNotKept

REF = ObjectRef("models", "m.bin")


def version_files(store):
    d = os.path.join(store.root, ".meta", "versions", "models")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def read(store, version=None):
    with store.open(REF, version) as (m, f):
        return m.version, f.read()


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "efs"))


def ingest(store, *payloads):
    return [store.put_bytes(REF, p, source="inline").manifest for p in payloads]


def test_replacing_keeps_the_last_three_versions_each_readable(store):
    ingest(store, b"v1", b"v2", b"v3", b"v4", b"v5")
    current = store.manifest(REF)
    assert current.version == 5 and sorted(current.kept()) == [3, 4, 5]
    assert [read(store, n) for n in (3, 4, 5)] == [(3, b"v3"), (4, b"v4"), (5, b"v5")]
    assert read(store) == (5, b"v5")
    # Pruned versions are gone from the store, not just hidden.
    assert version_files(store) == ["m.bin.v3", "m.bin.v4"]
    with pytest.raises(VersionNotKept) as exc:
        read(store, 2)
    assert exc.value.kept == [3, 4, 5]
    with pytest.raises(VersionNotKept):
        store.version(REF, 9)


def test_versions_are_hard_links_not_copies(store):
    ingest(store, b"v1")
    inode = os.stat(store.path(REF)).st_ino
    ingest(store, b"v2")
    kept = os.stat(os.path.join(store.root, ".meta", "versions", "models", "m.bin.v1"))
    assert kept.st_ino == inode and kept.st_nlink == 1  # the old object itself, now under one name


def test_rollback_makes_an_old_version_current_without_copying(store):
    ingest(store, b"v1", b"v2", b"v3")
    v1_inode = os.stat(os.path.join(store.root, ".meta", "versions", "models", "m.bin.v1")).st_ino
    result, before = store.rollback(REF, 1)
    assert before == 3 and result.status == "rolledBack" and result.manifest.version == 1
    assert os.stat(store.path(REF)).st_ino == v1_inode  # the same inode: no byte copied
    with open(store.path(REF), "rb") as f:
        assert f.read() == b"v1"  # the documented efsPath is the current version
    m = store.manifest(REF)
    assert (m.version, m.latest_version, sorted(m.kept())) == (1, 3, [1, 2, 3])
    assert read(store, 3) == (3, b"v3") and read(store) == (1, b"v1")
    assert store.rollback(REF, 1)[0].status == "current"
    # New bytes after a rollback take a new number, never a used one.
    (v4,) = ingest(store, b"v4")
    assert v4.version == 4 and sorted(v4.kept()) == [2, 3, 4]
    assert read(store, 2) == (2, b"v2")
    with pytest.raises(VersionNotKept):
        store.rollback(REF, 1)


def test_rollback_keeps_the_fileid_and_restores_the_versions_own_fields(store):
    first, _ = ingest(store, b"v1", b"second")
    m = store.rollback(REF, 1)[0].manifest
    assert (m.fileId, m.size, m.sha256, m.created) == (first.fileId, 2, first.sha256, first.created)
    assert m.committed == first.committed and m.updated >= first.updated


def test_same_bytes_as_an_older_version_is_a_new_version(store):
    ingest(store, b"a", b"b")
    (again,) = ingest(store, b"a")
    assert again.version == 3 and sorted(again.kept()) == [1, 2, 3]


def test_delete_removes_every_version(store):
    ingest(store, b"v1", b"v2", b"v3")
    store.rollback(REF, 2)
    store.delete(REF)
    assert version_files(store) == [] and not os.path.exists(store.path(REF))
    # A name created again starts afresh; nothing of its older life is served.
    (new,) = ingest(store, b"new")
    assert new.version == 1 and sorted(new.kept()) == [1]


def test_a_version_file_that_is_not_the_committed_one_is_never_served(store):
    ingest(store, b"v1", b"v2")
    path = os.path.join(store.root, ".meta", "versions", "models", "m.bin.v1")
    time.sleep(0.05)  # a later tick: the damage moves the mtime
    with open(path, "r+b") as f:
        f.write(b"XX")
    with pytest.raises(StoreCorrupt):
        read(store, 1)
    with pytest.raises(StoreCorrupt):
        store.rollback(REF, 1)
    assert read(store) == (2, b"v2")


def test_a_damaged_current_object_is_not_kept_as_a_version(store):
    ingest(store, b"v1")
    time.sleep(0.05)
    with open(store.path(REF), "r+b") as f:
        f.write(b"XX")
    (v2,) = ingest(store, b"v2")
    assert sorted(v2.kept()) == [2] and version_files(store) == []


def test_one_version_kept_means_no_version_files(tmp_path):
    store = Store(str(tmp_path / "efs"), versions_kept=1)
    ingest(store, b"v1", b"v2", b"v3")
    assert sorted(store.manifest(REF).kept()) == [3] and version_files(store) == []


def test_lowering_the_setting_prunes_at_the_next_ingest(tmp_path):
    root = str(tmp_path / "efs")
    ingest(Store(root, versions_kept=5), b"1", b"2", b"3", b"4")
    store = Store(root, versions_kept=2)
    (v5,) = ingest(store, b"5")
    assert sorted(v5.kept()) == [4, 5] and version_files(store) == ["m.bin.v4"]


def test_inputs_stay_unversioned(store):
    ref = ObjectRef("inputs", "x.json")
    for data in (b"1", b"2", b"3"):
        m = store.put_bytes(ref, data, source="inline").manifest
    assert m.version == 3 and sorted(m.kept()) == [3]
    with pytest.raises(VersionNotKept):
        store.rollback(ref, 2)


def test_reclaim_removes_version_files_no_manifest_keeps(store):
    ingest(store, b"v1", b"v2")
    d = os.path.join(store.root, ".meta", "versions", "models")
    # What a prune or a delete killed after its commit point leaves behind.
    os.link(store.path(REF), os.path.join(d, "m.bin.v7"))
    with open(os.path.join(d, "gone.bin.v1"), "wb") as f:
        f.write(b"orphan")
    assert store.reclaim(min_age=3600) == 0  # too young (by the link's ctime)
    assert store.reclaim() == 2
    assert version_files(store) == ["m.bin.v1"] and read(store, 1) == (1, b"v1")


def test_a_name_ending_like_a_version_is_its_own_name(store):
    ref = ObjectRef("models", "a.v2")
    for data in (b"1", b"2"):
        store.put_bytes(ref, data, source="inline")
    assert version_files(store) == ["a.v2.v1"]
    assert store.reclaim() == 0
    with store.open(ref, 1) as (m, f):
        assert (m.version, f.read()) == (1, b"1")


def test_manifests_of_the_first_store_read_as_one_version(store):
    ingest(store, b"v1")
    path = os.path.join(store.root, ".meta", "models", "m.bin.json")
    with open(path) as f:
        doc = json.load(f)
    for k in ("previous", "latest", "versionCreated"):
        del doc[k]
    with open(path, "w") as f:
        json.dump(doc, f)
    (v2,) = ingest(store, b"v2")
    assert v2.version == 2 and sorted(v2.kept()) == [1, 2] and read(store, 1) == (1, b"v1")


def test_the_model_cache_serves_versions_apart_and_forgets_those_not_kept(store):
    from chalicelib.model_cache import ModelCache

    cache = ModelCache(1 << 30)
    ingest(store, b"v1", b"v2")
    one, hit = cache.get(store, REF, version=1)
    assert (one.manifest.version, hit) == (1, False)
    two, hit = cache.get(store, REF)
    assert (two.manifest.version, hit) == (2, False)
    assert cache.get(store, REF, version=1)[1] and cache.get(store, REF)[1]  # both warm
    assert cache.get(store, REF, version=2)[0] is two  # the current one, pinned: the same entry
    ingest(store, b"v3", b"v4")  # version 1 falls out
    assert cache.get(store, REF)[0].manifest.version == 4
    assert {v for _, v in cache._entries} == {2, 4}
    with pytest.raises(NotFound) as exc:
        cache.get(store, REF, version=1)
    assert "kept versions: 2, 3, 4" in exc.value.message
