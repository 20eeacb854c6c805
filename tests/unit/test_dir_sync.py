"""Directory fsyncs only where they do something: detection of NFS and the policy switch."""

import os
import stat

import pytest

from chalicelib.config import DIR_FSYNC_MODES, ConfigError, load_settings
from chalicelib.names import ObjectRef
from chalicelib.store import Store, fs

REF = ObjectRef("models", "m.bin")

# Lines in the format of /proc/self/mountinfo (proc(5)).
MOUNTINFO = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
40 22 0:35 / /mnt/efs rw,relatime shared:20 - nfs4 127.0.0.1:/ rw,vers=4.1,rsize=1048576
41 22 259:1 / /mnt/efs2 rw,relatime shared:21 - ext4 /dev/root rw
42 40 0:36 / /mnt/efs/local rw,relatime shared:22 - tmpfs tmpfs rw
43 22 0:37 / /mnt/with\\040space rw,relatime shared:23 - nfs 10.0.0.1:/export rw,vers=3
44 22 0:38 / /srv rw - ext4 /dev/sdb rw
45 22 0:39 / /srv rw - nfs4 fs-1.efs.us-east-1.amazonaws.com:/ rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/mnt/efs", "nfs4"),
        ("/mnt/efs/models/m.bin", "nfs4"),
        ("/mnt/efs2/x", "ext4"),  # a sibling sharing a prefix is not inside /mnt/efs
        ("/mnt/efs/local/x", "tmpfs"),  # the innermost mount wins
        ("/mnt/with space/a", "nfs"),  # octal escapes decoded
        ("/srv/x", "nfs4"),  # stacked on one point: the last mount is the visible one
        ("/tmp/x", "ext4"),
    ],
)
def test_mount_fstype_picks_the_innermost_mount(path, fstype):
    assert fs.mount_fstype(path, MOUNTINFO) == fstype


def test_mount_fstype_without_a_matching_line():
    assert fs.mount_fstype("/x", "garbage\n") is None


@pytest.fixture
def mountinfo(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return str(path)


def test_is_nfs_reads_the_mount_table(mountinfo, tmp_path):
    assert fs.is_nfs("/mnt/efs/models", mountinfo)
    assert fs.is_nfs("/mnt/with space", mountinfo)
    assert not fs.is_nfs("/mnt/efs2", mountinfo)
    # No mount table (not Linux): keep the fsyncs, the safe side.
    assert not fs.is_nfs("/mnt/efs", str(tmp_path / "missing"))


def test_the_real_mount_table_of_this_test_is_not_nfs(tmp_path):
    if not os.path.exists(fs.MOUNTINFO):
        pytest.skip("no /proc/self/mountinfo")
    with open(fs.MOUNTINFO) as f:
        real = fs.mount_fstype(os.path.realpath(tmp_path), f.read())
    assert real is not None
    assert fs.is_nfs(str(tmp_path)) == (real.split(".")[0] in fs.NFS_FSTYPES)


def test_policy_modes(mountinfo):
    assert fs.DirSync("always", mountinfo_path=mountinfo).needed("/mnt/efs")
    assert not fs.DirSync("never", mountinfo_path=mountinfo).needed("/tmp/x")
    auto = fs.DirSync("auto", mountinfo_path=mountinfo)
    assert not auto.needed("/mnt/efs")  # NFS: the client's directory fsync is a no-op
    assert auto.needed("/mnt/efs2")  # a local disk needs them for durability
    assert auto.needed("/mnt/efs/local")
    with pytest.raises(ValueError, match="auto, always, never"):
        fs.DirSync("sometimes")


def test_auto_asks_once_per_root_and_keeps_the_answer(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    first = fs.DirSync(mountinfo_path=str(path))
    assert not first.needed("/mnt/efs")
    path.write_text("22 1 259:1 / / rw - ext4 /dev/root rw\n")  # the mount table changes later
    assert not fs.DirSync(mountinfo_path=str(path)).needed("/mnt/efs")  # kept for the process
    assert fs.DirSync(mountinfo_path=str(path)).needed("/mnt/efs2")  # a new root is asked afresh


def test_setting_parses_and_matches_the_store_modes():
    assert DIR_FSYNC_MODES == fs.DIR_SYNC_MODES
    assert load_settings({}).store_dir_fsync == "auto"
    assert load_settings({"STORE_DIR_FSYNC": "Never"}).store_dir_fsync == "never"
    with pytest.raises(ConfigError, match="STORE_DIR_FSYNC"):
        load_settings({"STORE_DIR_FSYNC": "off"})


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync the process issues, as 'dir' or 'file' (the real call still runs)."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd):
        seen.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


def _write_and_read(store):
    assert store.put(REF, [b"one"], source="inline").status == "created"
    assert store.put(REF, [b"two"], source="inline").status == "updated"
    manifest, data = store.read_bytes(REF)
    assert data == b"two" and manifest.version == 2
    assert store.lookup_file_id(manifest.fileId) == REF


@pytest.mark.parametrize("mode", ["always", "never"])
def test_store_issues_directory_fsyncs_only_under_always(tmp_path, fsyncs, mode):
    store = Store(str(tmp_path / "efs"), lock_timeout=5, dir_sync=fs.DirSync(mode))
    _write_and_read(store)
    assert fsyncs.count("file") >= 4  # objects and manifests are always fsynced
    assert ("dir" in fsyncs) == (mode == "always")
    assert store.health()["writable"]


def test_default_store_on_a_local_disk_keeps_directory_fsyncs(tmp_path, fsyncs):
    if fs.is_nfs(str(tmp_path)):
        pytest.skip("the test directory is on NFS here")
    store = Store(str(tmp_path / "efs"), lock_timeout=5)
    assert store.dir_sync.mode == "auto"
    _write_and_read(store)
    assert "dir" in fsyncs


def test_default_store_on_nfs_skips_them(tmp_path, fsyncs):
    root = os.path.realpath(tmp_path / "efs")
    table = tmp_path / "mountinfo"
    table.write_text(f"22 1 259:1 / / rw - ext4 /dev/root rw\n40 22 0:35 / {root} rw - nfs4 fs:/ rw\n")
    store = Store(root, lock_timeout=5, dir_sync=fs.DirSync(mountinfo_path=str(table)))
    _write_and_read(store)
    assert "dir" not in fsyncs and "file" in fsyncs
