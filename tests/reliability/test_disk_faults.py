"""Full disk and I/O errors while writing: 500 EFS_WRITE_FAILED with `stage`,
nothing partial left, the prior version intact, the next write fine."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

from tests.support import reliability as R
from tests.support.routes import check_error_body

MIB = 1 << 20


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def small_fs(tmp_path, monkeypatch):
    """A real 4 MiB tmpfs as the store root (we run as root in CI). Where
    mount is not permitted, the same tests run with ENOSPC injected at the
    os.write seam once 4 MiB are used (``real`` says which)."""
    root = tmp_path / "small"
    root.mkdir()
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True).returncode
        == 0
    )
    if not mounted:
        _inject_enospc_after(monkeypatch, str(root), 4 * MIB)
    monkeypatch.setenv("EFS_ROOT", str(root))
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    _reset()
    try:
        print(f"small_fs: {'tmpfs' if mounted else 'ENOSPC injection'}")
        yield str(root), mounted
    finally:
        _reset()
        if mounted:
            subprocess.run(["umount", "-l", str(root)], check=True)


def _inject_enospc_after(monkeypatch, root, budget):
    real_write = os.write
    used = [0]

    def write(fd, data):
        if _fd_path(fd).startswith(root + os.sep):
            if used[0] + len(data) > budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            used[0] += len(data)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def _fd_path(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@pytest.fixture
def app_http(small_fs):
    from chalice.test import Client

    import app

    with Client(app.app) as c:
        yield c


def _ingest(c, name, data):
    import base64
    import json

    r = c.http.post(
        "/ingest",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"filename": name, "data": base64.b64encode(data).decode(), "encoding": "base64"}),
    )
    return r.status_code, json.loads(r.body)


def _intact(root, name, data):
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    m, got = Store(root).read_bytes(ObjectRef("models", name))
    assert got == data and m.sha256 == R.sha(data)
    return m


def test_full_disk_during_data_write(small_fs, app_http):
    root, _ = small_fs
    v1 = R.content("v1", 1 * MIB)
    assert _ingest(app_http, "m.bin", v1)[0] == 200
    free = os.statvfs(root).f_bfree
    # 3.5 MiB: with v1's 1 MiB over the 4 MiB disk, and its base64 body (4.7 MB)
    # within MAX_REQUEST_BYTES (5 MiB).
    status, body = _ingest(app_http, "m.bin", R.content("v2", 3 * MIB + MIB // 2))
    check_error_body(status, body, "full disk")
    assert body["error"] == "EFS_WRITE_FAILED" and body["stage"] == "write"
    assert _intact(root, "m.bin", v1).version == 1
    # The failure is recorded (one small status record, the only block taken), nothing partial is left.
    record = os.path.join(root, ".meta", "status", "models", "m.bin.json")
    assert json.loads(open(record).read())["error"]["error"] == "EFS_WRITE_FAILED"
    record_blocks = os.stat(record).st_blocks * 512 // os.statvfs(root).f_frsize
    assert R.debris(root) == [] and os.statvfs(root).f_bfree == free - record_blocks, "partial temp file left"
    v3 = R.content("v3", 2 * MIB)
    status, body = _ingest(app_http, "m.bin", v3)
    assert status == 200 and body["status"] == "updated" and body["version"] == 2
    _intact(root, "m.bin", v3)


def test_full_disk_at_manifest(small_fs, app_http):
    """The data (one byte, in the one block left free) fits but the manifest does not: stage 'manifest'.

    (Empty inline data would need no block, but it is refused as a 400.)"""
    root, mounted = small_fs
    v1 = R.content("v1", 100_000)
    assert _ingest(app_http, "m.bin", v1)[0] == 200
    filler = os.path.join(root, "filler")
    if mounted:  # fill the real file system to the last block
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
            f.truncate(f.tell() - 4096)  # one page free again: room for the data, not the manifest
    status, body = _ingest(app_http, "m.bin", b"x")
    if mounted:
        check_error_body(status, body, "full disk manifest")
        assert body["error"] == "EFS_WRITE_FAILED" and body["stage"] == "manifest"
        assert _intact(root, "m.bin", v1).version == 1 and R.debris(root) == []
        os.unlink(filler)
        status, body = _ingest(app_http, "m.bin", b"x")
    assert status == 200 and body["version"] == 2
    _intact(root, "m.bin", b"x")


# -- EIO injected at each stage of the write path ---------------------------
def _eio():
    return OSError(errno.EIO, os.strerror(errno.EIO))


def _faulty(monkeypatch, root, stage):
    """Raise EIO at ``stage`` for files of the store only (one shot)."""
    fired = []
    real = {n: getattr(os, n) for n in ("open", "write", "fsync", "rename")}
    data_temp = os.path.join(root, "models", ".m.bin.")
    target = os.path.join(root, "models", "m.bin")

    def once(hit):
        if hit and not fired:
            fired.append(stage)
            raise _eio()

    def open_(path, flags, *a, **kw):
        once(stage == "open" and os.fspath(path).startswith(data_temp))
        return real["open"](path, flags, *a, **kw)

    def write(fd, data):
        once(stage == "write" and _fd_path(fd).startswith(data_temp))
        return real["write"](fd, data)

    def fsync(fd):
        p = _fd_path(fd)
        once(
            (stage == "fsync" and p.startswith(data_temp))
            or (
                stage == "dir-fsync"
                and p == os.path.dirname(target)
                and os.path.exists(target)
                and R.sha(open(target, "rb").read()) == R.sha(R.content("v2", 50_000))
            )
        )
        return real["fsync"](fd)

    def rename(src, dst, *a, **kw):
        dst = os.fspath(dst)
        once(
            (stage == "rename" and dst == target)
            or (stage == "intent" and dst.endswith("m.bin.pending"))
            or (stage == "manifest" and dst.endswith(os.sep + "m.bin.json"))
        )
        return real["rename"](src, dst, *a, **kw)

    for name, fn in (("open", open_), ("write", write), ("fsync", fsync), ("rename", rename)):
        monkeypatch.setattr(os, name, fn)
    return fired


# stage injected -> (documented stage, whether the new bytes are committed)
STAGES = {
    "open": ("open", False),
    "write": ("write", False),
    "fsync": ("fsync", False),
    "intent": ("manifest", False),
    "rename": ("rename", False),
    # The swap happened: recovery must roll it forward, never pair new
    # bytes with the old manifest.
    "dir-fsync": ("fsync", True),
    "manifest": ("manifest", True),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_eio_at_each_stage(stage, client, efs_root):
    root = str(efs_root)
    v1, v2 = R.content("v1", 40_000), R.content("v2", 50_000)
    assert _ingest(client, "m.bin", v1)[0] == 200
    with pytest.MonkeyPatch.context() as mp:
        fired = _faulty(mp, root, stage)
        status, body = _ingest(client, "m.bin", v2)
    assert fired == [stage], "fault was not injected"
    check_error_body(status, body, f"eio {stage}")
    documented, committed = STAGES[stage]
    assert body["error"] == "EFS_WRITE_FAILED" and body["stage"] == documented, body
    # Readers see one whole, matching version: the old one, or the new one
    # rolled forward from its intent.
    m = _intact(root, "m.bin", v2 if committed else v1)
    assert m.version == (2 if committed else 1)
    # A client retry is idempotent and leaves no debris.
    status, body = _ingest(client, "m.bin", v2)
    assert status == 200 and body["version"] == 2
    assert body["status"] == ("exists" if committed else "updated")
    assert R.debris(root) == [] and body["sha256"] == R.sha(v2)
