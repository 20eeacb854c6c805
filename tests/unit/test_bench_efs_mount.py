"""Row 12's FUSE mount never outlives its run: unmounted when the block
ends by an exception or SIGTERM, and a stale mount left by a run killed
outright (its daemon gone) is found and unmounted by the next run.

These mount the real EFS model (bench/efs_model.py), so they need
/dev/fuse, fusermount3 and mfusepy (which the bench installs itself)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cold_efs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None or cold_efs._ready() is not None,
    reason="no FUSE here (/dev/fuse, fusermount3, mfusepy): the bench's row 12 skips too",
)


@pytest.fixture
def dirs(tmp_path):
    base = tmp_path / "efs-ml-stages-test"
    backing, mnt = base / "backing", base / "mnt"
    backing.mkdir(parents=True)
    mnt.mkdir()
    (backing / "f").write_bytes(b"x")
    yield str(backing), str(mnt)
    if os.path.ismount(mnt) or str(mnt) in cold_efs.stale_mounts():
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def test_an_exception_in_the_block_unmounts(dirs):
    backing, mnt = dirs
    with pytest.raises(RuntimeError), cold_efs.mounted(backing, mnt):
        assert os.path.ismount(mnt) and Path(mnt, "f").read_bytes() == b"x"
        raise RuntimeError("a probe failed")
    assert not os.path.ismount(mnt)


def test_sigterm_unmounts_before_the_run_exits(dirs):
    backing, mnt = dirs
    code = (
        "import sys, time\n"
        "from bench import cold_efs\n"
        "with cold_efs.mounted(sys.argv[1], sys.argv[2]):\n"
        "    print('mounted', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, backing, mnt], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "mounted"
        assert os.path.ismount(mnt)
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 128 + signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not os.path.ismount(mnt) and mnt not in cold_efs.stale_mounts()


def test_a_mount_whose_daemon_was_killed_is_cleaned_by_the_next_run(dirs):
    backing, mnt = dirs
    daemon = cold_efs._mount(backing, mnt)
    daemon.kill()  # SIGKILL: nothing of the run's own cleanup runs
    daemon.wait()
    deadline = time.monotonic() + 10
    while mnt not in cold_efs.stale_mounts() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mnt in cold_efs.stale_mounts()  # listed, every access ENOTCONN
    with cold_efs.mounted(backing, mnt):  # the next run
        assert Path(mnt, "f").read_bytes() == b"x"
    assert not os.path.ismount(mnt) and mnt not in cold_efs.stale_mounts()


def test_a_live_mount_or_another_fuse_mount_is_not_stale(dirs, tmp_path):
    backing, mnt = dirs
    mounts = tmp_path / "mounts"
    mounts.write_text(
        f"fuse {mnt} fuse rw 0 0\n"  # ours, but its directory answers: not stale
        "sshfs /home/u/remote/mnt fuse.sshfs rw 0 0\n"  # not ours
        "tmpfs /tmp/efs-ml-bench-x/cold-efs/mnt tmpfs rw 0 0\n"  # not FUSE
    )
    assert cold_efs.stale_mounts(str(mounts)) == []
