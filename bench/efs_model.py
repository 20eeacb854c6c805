"""A wall-clock EFS model: a FUSE passthrough with EFS's round trips and rates.

``python -m bench.efs_model BACKING MOUNTPOINT`` serves BACKING at
MOUNTPOINT (foreground, until unmounted) with:

* 1.0 ms per read-class operation (open, a lookup or getattr that misses
  the kernel's attribute cache, readdir, the blocking flush of a close) and
  2.7 ms per write-class operation (create, mkdir, rename, unlink, rmdir,
  fsync, setattr: truncate, chmod, utimens), as AWS's EFS performance table
  gives for EFS Regional;
* reads queued per open file handle at 300 MB/s (one NFS stream) and per
  mount at 1,500 MiB/s (one client with elastic throughput), done with
  ``pread`` (the GIL released) into the buffer libfuse hands back;
* NFS-like caching: ``attr_timeout``/``entry_timeout`` 3 s, ``auto_cache``
  (the kernel keeps file pages while mtime/size hold), ``max_read`` 1 MiB
  (EFS's rsize), and a 15 MiB read-ahead (what amazon-efs-utils sets) where
  the mount's ``read_ahead_kb`` can be written;
* the backing files' inode numbers (``use_ino``), as NFS gives each file a
  stable fileid: the store's identity check (inode, size, mtime against the
  manifest) holds through the mount as it does on EFS. Without it the kernel
  numbered the files itself, every open took the store's locked slow path,
  and row 12 counted that.

Locks are not modelled (the kernel keeps them locally). On 2 cores the
daemon costs about 0.8 CPU-s per GiB read: figures beside it say so.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from typing import Any

READ_OP = 0.0010
WRITE_OP = 0.0027
STREAM_BYTES_PER_S = 300e6
MOUNT_BYTES_PER_S = 1500 * 1024 * 1024
OPTIONS = {"attr_timeout": 3.0, "entry_timeout": 3.0, "auto_cache": True, "max_read": 1024 * 1024, "use_ino": True}
READ_AHEAD_KB = 15 * 1024
_CAP_POSIX_LOCKS = 1 << 1  # libfuse 3's FUSE_CAP_POSIX_LOCKS
_CAP_FLOCK_LOCKS = 1 << 10  # FUSE_CAP_FLOCK_LOCKS


class _Rate:
    """A queue of bytes at a rate: when a read of ``n`` bytes may end."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.free_at = 0.0

    def book(self, n: int, now: float) -> float:
        self.free_at = max(now, self.free_at) + n / self.per_second
        return self.free_at


def operations(backing: str) -> Any:
    """The passthrough's operations object (mfusepy imported here: the bench
    installs it only when it runs this section)."""
    import mfusepy

    class EfsModel(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.root = os.path.realpath(backing)
            self.mutex = threading.Lock()
            self.mount = _Rate(MOUNT_BYTES_PER_S)
            self.streams: dict[int, _Rate] = {}

        def init_with_config(self, conn: Any, config: Any) -> None:
            # libfuse 3 wants max_read in the connection as well as in -o.
            if conn is not None:
                conn.max_read = OPTIONS["max_read"]
                conn.max_readahead = READ_AHEAD_KB * 1024
                # Locks stay in the kernel (not modelled): no POSIX/flock forwarding.
                conn.want &= ~(_CAP_POSIX_LOCKS | _CAP_FLOCK_LOCKS)

        def _path(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        @staticmethod
        def _errors(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except OSError as exc:
                raise mfusepy.FuseOSError(exc.errno or errno.EIO) from None

        # -- read-class ------------------------------------------------------------
        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            time.sleep(READ_OP)  # the kernel asks only on a cache miss (attr_timeout)
            st = self._errors(os.fstat, fh) if fh is not None else self._errors(os.lstat, self._path(path))
            keys = (
                "st_ino",
                "st_mode",
                "st_nlink",
                "st_uid",
                "st_gid",
                "st_size",
                "st_atime_ns",
                "st_mtime_ns",
                "st_ctime_ns",
            )
            out = {k: getattr(st, k) for k in keys}
            for k in ("atime", "mtime", "ctime"):
                out[f"st_{k}"] = out.pop(f"st_{k}_ns")
            return out

        def readdir(self, path: str, fh: int) -> list[str]:
            time.sleep(READ_OP)
            return [".", "..", *self._errors(os.listdir, self._path(path))]

        def readlink(self, path: str) -> str:
            time.sleep(READ_OP)
            return str(self._errors(os.readlink, self._path(path)))

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self._path(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag")
            return {k: getattr(st, k) for k in (*keys, "f_frsize", "f_namemax")}

        def open(self, path: str, flags: int) -> int:
            time.sleep(READ_OP)
            fh = int(self._errors(os.open, self._path(path), flags & ~os.O_CREAT))
            with self.mutex:
                self.streams[fh] = _Rate(STREAM_BYTES_PER_S)
            return fh

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            data = self._errors(os.pread, fh, size, offset)
            now = time.monotonic()
            with self.mutex:
                stream = self.streams.setdefault(fh, _Rate(STREAM_BYTES_PER_S))
                ends = max(stream.book(len(data), now), self.mount.book(len(data), now))
            delay = ends - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            return bytes(data)

        def flush(self, path: str, fh: int) -> int:
            time.sleep(READ_OP)  # close-to-open: the close waits for the server
            return 0

        def release(self, path: str, fh: int) -> int:
            with self.mutex:
                self.streams.pop(fh, None)
            os.close(fh)
            return 0

        # -- write-class -----------------------------------------------------------
        def create(self, path: str, mode: int, fi: Any = None) -> int:
            time.sleep(WRITE_OP)
            fh = int(self._errors(os.open, self._path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
            with self.mutex:
                self.streams[fh] = _Rate(STREAM_BYTES_PER_S)
            return fh

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            return int(self._errors(os.pwrite, fh, data, offset))

        def fsync(self, path: str, datasync: bool, fh: int) -> int:
            time.sleep(WRITE_OP)
            self._errors(os.fsync, fh)
            return 0

        def mkdir(self, path: str, mode: int) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.mkdir, self._path(path), mode)

        def rmdir(self, path: str) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.rmdir, self._path(path))

        def unlink(self, path: str) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.unlink, self._path(path))

        def rename(self, old: str, new: str) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.rename, self._path(old), self._path(new))

        def link(self, target: str, source: str) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.link, self._path(source), self._path(target))

        def fsyncdir(self, path: str, datasync: bool, fh: int) -> int:
            return 0  # free on NFS: nfs_fsync_dir sends nothing

        def symlink(self, target: str, source: str) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.symlink, source, self._path(target))

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.truncate, self._path(path), length)

        def chmod(self, path: str, mode: int) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.chmod, self._path(path), mode)

        def utimens(self, path: str, times: Any = None) -> None:
            time.sleep(WRITE_OP)
            self._errors(os.utime, self._path(path), None, ns=times) if times else os.utime(self._path(path))

    return EfsModel()


def set_read_ahead(mountpoint: str, kb: int = READ_AHEAD_KB) -> bool:
    """Write the mount's ``read_ahead_kb`` (its bdi in sysfs); False if not allowed here."""
    st = os.stat(mountpoint)
    path = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
    try:
        with open(path, "w") as f:
            f.write(str(kb))
        return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    """Serve ``argv[1]`` at ``argv[2]`` until unmounted."""
    import mfusepy

    backing, mountpoint = argv[1], argv[2]
    mfusepy.FUSE(operations(backing), mountpoint, foreground=True, nothreads=False, **OPTIONS)


if __name__ == "__main__":
    main(sys.argv)
