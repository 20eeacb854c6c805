"""Per-name POSIX record locks that hold across EFS clients and threads.

EFS (NFSv4.1) honours ``fcntl`` record locks between clients; ``flock`` is
not propagated. Record locks belong to the *process*, so two threads of one
process do not exclude each other, and closing any descriptor of the file
drops all of the process's locks on it. So:

* One lock file per kind (``.locks/<kind>.lock``), opened once per process
  and kept: no open, create or close per request. Each name owns a slot of
  three bytes in it, at an offset from a 48-bit hash of the name (a
  collision only makes two names share a lock, never breaks one).
* Thread locks per slot byte stand in for what fcntl does not do between
  threads of one process.

A slot's bytes:

* ``WRITER`` (+0): held exclusively for a whole write, so writers of one
  name are serialised while writers of different names run in parallel.
* ``COMMIT`` (+1): held exclusively by a writer while it swaps the new
  object and manifest in. Readers normally take no lock at all (they check
  the object's identity against its manifest); only a reader that found a
  commit in flight or a dead writer's intent takes it, shared.
* ``TURNSTILE`` (+2): taken with COMMIT. A committer waiting for it holds
  TURNSTILE first, so a stream of such readers cannot starve it.

Uncontended, a write takes and releases the bytes it needs with one
``fcntl`` call each way (adjacent bytes form one range).

Every wait polls with back-off and ends by the timeout or the invocation's
deadline (``chalicelib.deadline``), whichever is nearer.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from chalicelib import deadline

WRITER = 0
COMMIT = 1
TURNSTILE = 2
_SLOT = 4  # bytes per name (three used)
_MAX_IDLE_FILES = 32
Opener = Callable[[str], int]


class LockTimeout(Exception):
    """The lock was not acquired in time. ``by_deadline``: the invocation's
    deadline, not the lock timeout, is what ran out."""

    def __init__(self, path: str, by_deadline: bool) -> None:
        self.by_deadline = by_deadline
        super().__init__(path)


def slot(name: str) -> int:
    """Offset of ``name``'s three bytes in its kind's lock file."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:6], "big") * _SLOT


class _File:
    __slots__ = ("fd", "dev", "ino", "users", "threads")

    def __init__(self, fd: int) -> None:
        st = os.fstat(fd)
        self.fd, self.dev, self.ino = fd, st.st_dev, st.st_ino
        self.users = 0
        self.threads: dict[int, tuple[threading.Lock, int]] = {}  # byte offset -> (lock, users)


_files: dict[str, _File] = {}
_registry = threading.Lock()


def _acquire_file(path: str, opener: Opener) -> _File:
    with _registry:
        entry = _files.get(path)
        if entry is not None and entry.users == 0:
            # Kept between requests; make sure it is still the file others lock.
            try:
                st = os.lstat(path)
                stale = (st.st_dev, st.st_ino) != (entry.dev, entry.ino)
            except OSError:
                stale = True
            if stale:
                del _files[path]
                os.close(entry.fd)
                entry = None
        if entry is None:
            entry = _files[path] = _File(opener(path))
            idle = [p for p, e in _files.items() if e.users == 0 and p != path]
            for p in idle[: max(0, len(idle) - _MAX_IDLE_FILES)]:
                os.close(_files.pop(p).fd)  # no thread holds anything on it
        entry.users += 1
        return entry


def _release_file(entry: _File) -> None:
    with _registry:
        entry.users -= 1


def _thread_lock(entry: _File, offset: int) -> threading.Lock:
    with _registry:
        lock, users = entry.threads.get(offset, (None, 0))
        if lock is None:
            lock = threading.Lock()
        entry.threads[offset] = (lock, users + 1)
        return lock


def _drop_thread_lock(entry: _File, offset: int) -> None:
    with _registry:
        lock, users = entry.threads[offset]
        if users <= 1:
            del entry.threads[offset]
        else:
            entry.threads[offset] = (lock, users - 1)


def _poll(fd: int, mode: int, start: int, length: int, until: float, path: str, by_deadline: bool) -> None:
    delay = 0.002
    while True:
        try:
            fcntl.lockf(fd, mode | fcntl.LOCK_NB, length, start, os.SEEK_SET)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= until:
            raise LockTimeout(path, by_deadline)
        time.sleep(min(delay, max(0.0, until - time.monotonic())))
        delay = min(delay * 2, 0.1)


@contextmanager
def hold(
    path: str, opener: Opener, name: str, order: Sequence[int], *, shared: bool = False, timeout: float = 120.0
) -> Iterator[None]:
    """Hold bytes ``order`` of ``name``'s slot in the lock file at ``path``.

    ``order`` is the order to take them in when they are contended (e.g.
    ``WRITER, TURNSTILE, COMMIT``); uncontended, all are taken in one call.
    ``opener(path)`` opens the lock file (once per process).
    """
    limit = deadline.remaining(timeout)
    by_deadline = limit < timeout
    until = time.monotonic() + limit
    base = slot(name)
    offsets = sorted(base + b for b in order)
    entry = _acquire_file(path, opener)
    taken: list[threading.Lock] = []
    try:
        for off in offsets:
            lock = _thread_lock(entry, off)
            if not lock.acquire(timeout=max(until - time.monotonic(), 0.001)):
                _drop_thread_lock(entry, off)
                raise LockTimeout(path, by_deadline)
            taken.append(lock)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        lo, hi = offsets[0], offsets[-1] + 1
        contiguous = hi - lo == len(offsets)
        try:
            if not contiguous:
                raise BlockingIOError(errno.EAGAIN, "not one range")
            fcntl.lockf(entry.fd, mode | fcntl.LOCK_NB, hi - lo, lo, os.SEEK_SET)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            # Contended: one byte at a time, in the caller's order.
            try:
                for b in order:
                    _poll(entry.fd, mode, base + b, 1, until, path, by_deadline)
            except BaseException:
                fcntl.lockf(entry.fd, fcntl.LOCK_UN, hi - lo, lo, os.SEEK_SET)
                raise
        try:
            yield
        finally:
            fcntl.lockf(entry.fd, fcntl.LOCK_UN, hi - lo, lo, os.SEEK_SET)
    finally:
        for off, lock in zip(offsets, taken):
            lock.release()
            _drop_thread_lock(entry, off)
        _release_file(entry)
