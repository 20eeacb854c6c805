"""Per-name POSIX record locks that hold across EFS clients and threads.

EFS (NFSv4.1) honours ``fcntl`` record locks between clients; ``flock`` is
not propagated. Record locks belong to the *process*, so two threads of one
process do not exclude each other, and closing any descriptor of the file
drops all of the process's locks on it. Each lock file therefore gets one
shared descriptor per process, guarded by thread locks, and is closed only
when no thread in the process holds anything on it.

Each name's lock file carries three one-byte ranges:

* ``WRITER`` (byte 0): held exclusively for a whole write, so writers of one
  name are serialised while writers of different names run in parallel.
* ``COMMIT`` (byte 1): held exclusively by a writer only while it swaps the
  new object and manifest in, and shared by readers while they read the
  manifest and open the object. Readers never wait behind a long copy.
* ``TURNSTILE`` (byte 2): taken (shared by readers, exclusively by a
  committer) only while acquiring COMMIT. A committer waiting there
  stops new readers, so a steady stream of them cannot starve it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

WRITER = 0
COMMIT = 1
# Passed on the way to COMMIT (see Store._lock): writer preference.
TURNSTILE = 2


class LockTimeout(Exception):
    """The lock was not acquired within the timeout."""


class _Entry:
    __slots__ = ("fd", "users", "thread_locks")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.thread_locks = {b: threading.Lock() for b in (WRITER, COMMIT, TURNSTILE)}


_registry: dict[str, _Entry] = {}
_registry_lock = threading.Lock()


def _acquire_entry(path: str) -> _Entry:
    with _registry_lock:
        entry = _registry.get(path)
        if entry is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            entry = _registry[path] = _Entry(fd)
        entry.users += 1
        return entry


def _release_entry(path: str, entry: _Entry) -> None:
    with _registry_lock:
        entry.users -= 1
        if entry.users == 0:
            del _registry[path]
            os.close(entry.fd)


@contextmanager
def record_lock(path: str, byte: int, *, shared: bool = False,
                timeout: float = 120.0) -> Iterator[None]:
    """Hold byte ``byte`` of the lock file at ``path``.

    Polls with back-off instead of blocking so that a stuck peer turns into
    :class:`LockTimeout` rather than a Lambda timeout.
    """
    deadline = time.monotonic() + timeout
    entry = _acquire_entry(path)
    try:
        thread_lock = entry.thread_locks[byte]
        if not thread_lock.acquire(timeout=max(timeout, 0.001)):
            raise LockTimeout(path)
        try:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
            delay = 0.002
            while True:
                try:
                    fcntl.lockf(entry.fd, mode, 1, byte, os.SEEK_SET)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockTimeout(path) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            try:
                yield
            finally:
                fcntl.lockf(entry.fd, fcntl.LOCK_UN, 1, byte, os.SEEK_SET)
        finally:
            thread_lock.release()
    finally:
        _release_entry(path, entry)
