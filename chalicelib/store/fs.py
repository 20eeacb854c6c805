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
* ``fsync`` of a directory uses the kept descriptor: no open/close per sync.

Path helpers here have no side effects; only ``Dirs.fd(..., create=True)``
creates directories, once.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
import weakref

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# A path that is not a real directory of the store (missing, symlink, file).
NOT_A_DIR = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)


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
    see the store as it is now, not as it was).
    """

    def __init__(self, root: str, *, cache: bool = True) -> None:
        self.root = root
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
        """Make the entries of directory ``parts`` durable (its kept descriptor)."""
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
