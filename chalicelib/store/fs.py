"""POSIX primitives of the store: directories opened once, opens beneath the root.

Every store directory is opened once per ``Dirs`` (one per process in
production) by a walk from the root that follows no symlink (``O_NOFOLLOW``
on each component), created there if missing, and its descriptor is kept:
the store never replaces a directory, so the handle stays right for the
life of the process, and no request pays for ``mkdir``/``lstat`` walks.

* Reads open their file relative to that descriptor with ``O_NOFOLLOW``: one
  ``openat`` per file, never a symlink on the way.
* Namespace changes (create, rename, unlink, symlink) name the file by its
  absolute path, right after checking (``lstat``, served from the attribute
  cache) that the path still leads to the very directory that was opened. A
  directory swapped for a symlink is refused, as before; the descriptor-only
  forms (``renameat`` with a directory descriptor) are invisible to Python's
  audit hooks, which the store's symlink tests rely on.
* ``fsync`` of a directory uses the kept descriptor: no open/close per sync,
  and is issued only where it does something (``DirSync``): on a local disk
  it makes a rename durable; on NFS it is a no-op in the client (Linux
  ``fs/nfs/dir.c``, ``nfs_fsync_dir``: "All directory operations under NFS
  are synchronous, so fsync() is a dummy operation"), so it is skipped there.

Path helpers here have no side effects; only ``Dirs.fd(..., create=True)``
creates directories, once.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import weakref
from typing import Literal

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# A path that is not a real directory of the store (missing, symlink, file).
NOT_A_DIR = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


# Where the store fsyncs directories: "auto" asks the root's mount (below).
DirSyncMode = Literal["auto", "always", "never"]
DIR_SYNC_MODES: tuple[DirSyncMode, ...] = ("auto", "always", "never")
MOUNTINFO = "/proc/self/mountinfo"
# Filesystem types whose client makes a directory fsync a no-op
# (``nfs_fsync_dir``): every namespace operation is a synchronous RPC the
# server commits to stable storage before it replies.
NFS_FSTYPES = ("nfs", "nfs4")


def _unescape(field: str) -> str:
    """A mountinfo path field with its octal escapes (``\\040`` = space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_fstype(path: str, mountinfo: str) -> str | None:
    """The filesystem type of the mount that holds ``path`` (absolute, resolved),
    from the text of ``/proc/self/mountinfo``; ``None`` if no mount matches.

    The innermost mount wins: the longest mount point that is ``path`` or an
    ancestor of it (the last such line, for mounts stacked on one point).
    """
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), tail[0])
    return best[1] if best else None


def is_nfs(path: str, mountinfo_path: str = MOUNTINFO) -> bool:
    """Whether ``path`` lives on an NFS mount (EFS is NFSv4.1).

    Reads the mount table; ``False`` when it cannot be read (not Linux), so
    the store keeps its directory fsyncs: the safe side.
    """
    try:
        with open(mountinfo_path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        return False
    fstype = mount_fstype(os.path.realpath(path), text)
    return fstype is not None and fstype.split(".")[0] in NFS_FSTYPES


_detected: dict[str, bool] = {}
_detected_lock = threading.Lock()


class DirSync:
    """Whether the store fsyncs its directories after namespace changes.

    * ``always``: every directory fsync is issued (local disks need them: a
      rename is durable only once its directory is synced);
    * ``never``: none is (NFS: the client's directory fsync sends nothing,
      each create/rename/unlink/link was committed by the server before it
      replied);
    * ``auto`` (default): ``never`` if the root is on an NFS mount, else
      ``always``; asked once per process per root and kept.
    """

    def __init__(self, mode: str = "auto", *, mountinfo_path: str = MOUNTINFO) -> None:
        if mode not in DIR_SYNC_MODES:
            raise ValueError(f"directory fsync mode must be one of {', '.join(DIR_SYNC_MODES)}, got {mode!r}")
        self.mode: DirSyncMode = mode
        self._mountinfo = mountinfo_path

    def needed(self, root: str) -> bool:
        """Whether directory fsyncs under ``root`` make anything durable."""
        if self.mode != "auto":
            return self.mode == "always"
        key = f"{self._mountinfo}\0{os.path.realpath(root)}"
        with _detected_lock:
            hit = _detected.get(key)
            if hit is None:
                hit = _detected[key] = is_nfs(root, self._mountinfo)
        return not hit

    def __repr__(self) -> str:
        return f"DirSync({self.mode!r})"


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_all(fd: int) -> bytes:
    """Read ``fd`` to its end (small files: manifests)."""
    parts = []
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


def unlink_quietly(path: str) -> None:
    """Remove ``path`` (never following a symlink); ignore any error."""
    try:
        os.unlink(path)
    except OSError:
        pass


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass  # NFS may report a deferred error here; fsync already surfaced it


def reason(exc: OSError) -> str:
    """An OSError's reason without its filename (paths never reach clients)."""
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


class Dirs:
    """The store's directories, each opened once beneath ``root`` and kept.

    ``cache=False`` opens afresh on every call (the health probe, which must
    see the store as it is now, not as it was). ``sync_dirs=False`` makes
    :meth:`fsync` a no-op (see :class:`DirSync`).
    """

    def __init__(self, root: str, *, cache: bool = True, sync_dirs: bool = True) -> None:
        self.root = root
        self.sync_dirs = sync_dirs
        self._cache = cache
        self._fds: dict[tuple[str, ...], tuple[int, int, int]] = {}
        self._retired: list[int] = []
        self._lock = threading.RLock()  # fd() walks through fd() of the parent
        # Descriptors go with the Dirs (tests build many stores per process).
        self._finalizer = weakref.finalize(self, _close_all, self._fds, self._retired)

    def path(self, *parts: str) -> str:
        """Absolute path of ``parts`` below the root (no side effect)."""
        return os.path.join(self.root, *parts)

    def fd(self, *parts: str, create: bool = False) -> int | None:
        """Descriptor of directory ``parts`` (``()`` is the root).

        ``None`` if it does not exist (and ``create`` is false). Raises
        ``OSError`` (``ELOOP``/``ENOTDIR``) if the path is not a real directory.
        """
        with self._lock:
            hit = self._fds.get(parts)
            if hit is not None:
                fd, dev, ino = hit
                try:
                    st = os.lstat(self.path(*parts)) if parts else os.stat(self.root)
                    if (st.st_dev, st.st_ino) == (dev, ino):
                        return fd
                except OSError:
                    pass
                # Replaced or removed behind our back: forget it, walk again.
                del self._fds[parts]
                self._retired.append(fd)
            opened = self._walk(parts, create)
            if opened is None:
                return None
            st = os.fstat(opened)
            if self._cache:
                self._fds[parts] = (opened, st.st_dev, st.st_ino)
            else:
                self._retired.append(opened)
            return opened

    def _walk(self, parts: tuple[str, ...], create: bool) -> int | None:
        if parts:
            parent: int | None
            if self._cache:
                parent = self.fd(*parts[:-1], create=create)
            else:
                parent = self._walk(parts[:-1], create)
                if parent is not None:
                    self._retired.append(parent)
            if parent is None:
                return None
            try:
                return os.open(parts[-1], DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
            try:
                os.mkdir(self.path(*parts), 0o755)
            except FileExistsError:
                pass
            return os.open(parts[-1], DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
        try:
            return os.open(self.root, DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                return None
        os.makedirs(self.root, exist_ok=True)
        return os.open(self.root, DIR_FLAGS)

    def open(self, parts: tuple[str, ...], name: str, flags: int = os.O_RDONLY) -> int:
        """Open file ``name`` in directory ``parts`` for reading, never through a symlink.

        Raises ``FileNotFoundError`` when it, or its directory, is missing or
        not real (a planted symlink looks like nothing).
        """
        try:
            dfd = self.fd(*parts)
        except OSError as exc:
            if exc.errno in NOT_A_DIR:
                raise FileNotFoundError(name) from None
            raise
        if dfd is None:
            raise FileNotFoundError(name)
        try:
            return os.open(name, flags | NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FileNotFoundError(name) from None
            raise

    def lstat(self, parts: tuple[str, ...], name: str) -> os.stat_result | None:
        """``lstat`` of ``name`` in ``parts`` (attribute cache: no round trip), or ``None``."""
        try:
            dfd = self.fd(*parts)
            if dfd is None:
                return None
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except OSError:
            return None

    def readlink(self, parts: tuple[str, ...], name: str) -> str:
        """The text of symlink ``name`` in ``parts`` (never followed)."""
        dfd = self.fd(*parts)
        if dfd is None:
            raise FileNotFoundError(name)
        return os.readlink(name, dir_fd=dfd)

    def listdir(self, parts: tuple[str, ...]) -> list[str]:
        """Entries of a store directory; none if it is missing or not real."""
        try:
            dfd = self.fd(*parts)
        except OSError as exc:
            if exc.errno in NOT_A_DIR:
                return []
            raise
        return [] if dfd is None else os.listdir(dfd)

    def unlink_quietly(self, parts: tuple[str, ...], name: str) -> None:
        """Remove ``name`` from directory ``parts`` if that is still the real
        directory of the store (never through a symlink); ignore any error."""
        try:
            if self.fd(*parts) is None:
                return
        except OSError:
            return
        unlink_quietly(self.path(*parts, name))

    def fsync(self, *parts: str) -> None:
        """Make the entries of directory ``parts`` durable (its kept descriptor).

        Nothing to do where namespace operations are already durable when
        they return (NFS: ``sync_dirs`` is false there).
        """
        if not self.sync_dirs:
            return
        dfd = self.fd(*parts)
        if dfd is None:
            raise FileNotFoundError(self.path(*parts))
        os.fsync(dfd)

    def close(self) -> None:
        """Close every kept descriptor."""
        self._finalizer()


def _close_all(fds: dict[tuple[str, ...], tuple[int, int, int]], retired: list[int]) -> None:
    for fd, _, _ in fds.values():
        close_quietly(fd)
    for fd in retired:
        close_quietly(fd)
    fds.clear()
    retired.clear()


def is_regular(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISREG(st.st_mode)
