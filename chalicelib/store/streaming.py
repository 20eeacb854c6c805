"""Streaming helpers of the store: hashing and write-back overlapped with I/O.

Writes: overlap the disk work of one large streamed write with its reads.

An ingest receives each chunk, hashes it and writes it, in order, in one
pass; large S3 objects arrive from parallel part threads, so the network is
already overlapped and the writer hashes each chunk in its own thread just
before writing it (the write then copies it from cache): a hasher thread
and its queue measured
~0.15 CPU-s/GiB more (``make bench`` rows 6-7). Written data is queued for
write-back as the stream goes (:class:`WriteBehind`), so the final fsync
waits only for the tail.

Reads: :class:`HashingReader` hands a runner an object's bytes (or a path
that reopens the very inode) and hashes exactly what it could have seen, so
a model is verified against its manifest while it loads.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from typing import BinaryIO

MIB = 1024 * 1024
PARALLEL_MIN = 32 * MIB  # files from this size are pulled in by parallel ranged reads
READERS = 8  # parallel readers: one NFS stream is ~300 MB/s, a client ~1,500 MiB/s
STRIPE = 8 * MIB  # what one reader fetches at a time (in READ_BYTES preads)
READ_BYTES = MIB  # one pread: the mount's rsize / FUSE max_read


class WriteBehind:
    """Start write-back of a file's data every ``every`` bytes, without waiting.

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on the bytes written since
    the last call queues them for the disk (or the NFS server) and returns at
    once, like RocksDB's ``bytes_per_sync``: the disk works while the stream
    goes on, and the writer's final fsync (still what makes the file
    durable) waits only for the tail. A failed write-back is recorded on the
    file and reported by that fsync. Where the call does not exist (not
    Linux) this does nothing.
    """

    def __init__(self, fd: int, every: int = 16 * MIB) -> None:
        self._fd = fd
        self._every = every
        self._started = 0  # bytes already handed to write-back
        self._written = 0

    def wrote(self, n: int) -> None:
        """Record ``n`` more bytes written at the end of the file."""
        self._written += n
        if self._written - self._started >= self._every:
            _sync_file_range(self._fd, self._started, self._written - self._started)
            self._started = self._written


_SYNC_FILE_RANGE_WRITE = 2
_libc_sync_file_range: object = None


def _sync_file_range(fd: int, offset: int, nbytes: int) -> None:
    """Queue ``nbytes`` at ``offset`` for write-back; a no-op where unsupported."""
    global _libc_sync_file_range
    if _libc_sync_file_range is None:
        _libc_sync_file_range = False
        try:
            import ctypes  # only large writes get here: not an import-time cost

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
            fn.restype = ctypes.c_int
            _libc_sync_file_range = fn
        except (OSError, AttributeError):
            pass
    if _libc_sync_file_range:
        _libc_sync_file_range(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # type: ignore[operator]


class HashingReader:
    """A read-only file wrapper that hashes every byte handed out.

    Runners either :meth:`read` the bytes (hashed as they pass), or ask for
    :meth:`native_path` when their library loads a path itself faster than
    from a bytes copy; the whole file is then hashed in a background thread
    while the library loads it. Either way :meth:`finish` gives the digest of
    exactly the bytes the runner could have seen.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._hasher = hashlib.sha256()
        self.bytes_read = 0
        self._background: threading.Thread | None = None
        self._background_error: BaseException | None = None
        self._mapping: mmap.mmap | None = None

    def read(self, n: int = -1) -> bytes:
        if self._background is not None:
            raise RuntimeError("read() after native_path(): the file is being hashed in the background")
        data = self._f.read(n)
        self._hasher.update(data)
        self.bytes_read += len(data)
        return data

    def native_path(self) -> str | None:
        """A path that opens this very file, and start hashing it in the background.

        The path is ``/proc/self/fd/N``: it reopens the inode we hold, not
        whatever the store's name points at now, so a concurrent replace
        cannot slip a different model past the hash. ``None`` where there is
        no ``/proc`` (then read the bytes instead). Call before any read.
        The store only ever replaces objects by rename; a file truncated in
        place *while* it is mapped would fault (SIGBUS), which is outside
        the store's protocol.
        """
        if self.bytes_read or self._background is not None:
            raise RuntimeError("native_path() must come before any read")
        fd = self._f.fileno()
        path = f"/proc/self/fd/{fd}"
        if not os.path.exists(path):
            return None
        size = os.fstat(fd).st_size
        # One mapping, shared by the background hash and :meth:`mapped`.
        self._mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
        started = threading.Event()
        self._background = threading.Thread(
            target=self._hash_mapped, args=(size, started), name="model-sha256", daemon=True
        )
        self._background.start()
        # Wait until the thread is inside hashlib (which drops the GIL for the
        # whole call): native loaders may hold the GIL while they parse, and
        # a thread still waiting for it would not overlap at all.
        started.wait()
        return path

    def mapped(self) -> bytes | mmap.mmap:
        """After :meth:`native_path`: the file's bytes as a read-only mapping of
        the very file the path opens (no copy), e.g. to scan it before a
        library loads the path. Valid until :meth:`finish`; release any
        memoryview of it before then."""
        if self._background is None:
            raise RuntimeError("mapped() comes after native_path()")
        return self._mapping if self._mapping is not None else b""

    def _hash_mapped(self, size: int, started: threading.Event) -> None:
        try:
            if self._mapping is not None and size >= PARALLEL_MIN:
                started.set()
                self._hash_behind_readers(size)
            elif self._mapping is not None:
                started.set()
                # One update over the mapping: a single GIL-free call, no copy.
                self._hasher.update(self._mapping)
            self.bytes_read = size
        except BaseException as exc:  # reported by finish(), never lost
            self._background_error = exc
        finally:
            started.set()

    def _hash_behind_readers(self, size: int) -> None:
        """Hash the mapping in order while :data:`READERS` threads pull its
        stripes into the page cache with ranged ``pread`` (front first): on
        a network mount one open stream is capped (EFS: ~300 MB/s) but the
        client is not (~1,500 MiB/s), and a mapping faults in as one stream.
        The readers copy into one small buffer each (``READ_BYTES``), so the
        process holds no second copy of the model; the hash (and the scan,
        and onnxruntime's own read of the path) then find the pages cached.
        A reader's error only ends its prefetch: the hash faults those pages
        itself, so the digest is always of the file's bytes."""
        stripes = (size + STRIPE - 1) // STRIPE
        landed = [False] * stripes
        cond = threading.Condition()
        claimed = iter(range(stripes))  # next() under the GIL: each stripe to one reader
        fd = self._f.fileno()

        def reader() -> None:
            buffer = bytearray(READ_BYTES)
            try:
                # Its own descriptor of the same inode: a network mount caps
                # each open stream, not the client.
                own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                own = -1
            source = own if own >= 0 else fd
            try:
                for i in claimed:
                    start, end = i * STRIPE, min(size, (i + 1) * STRIPE)
                    try:
                        while start < end:
                            got = os.preadv(source, [memoryview(buffer)[: min(READ_BYTES, end - start)]], start)
                            if got <= 0:
                                break
                            start += got
                    finally:
                        with cond:
                            landed[i] = True
                            cond.notify_all()
            except OSError:
                pass  # the hash reads what was not prefetched
            finally:
                if own >= 0:
                    os.close(own)

        threads = [threading.Thread(target=reader, name="model-read", daemon=True) for _ in range(READERS)]
        for t in threads:
            t.start()
        try:
            assert self._mapping is not None
            with memoryview(self._mapping) as view:
                for i in range(stripes):
                    with cond:
                        # Polled too: readers that all failed notify no more.
                        while not landed[i] and any(t.is_alive() for t in threads):
                            cond.wait(0.1)
                    # One read's worth at a time, each dropped once hashed:
                    # out of this process's RSS (the pages stay in the page
                    # cache for the scan and onnxruntime), so a cold load holds
                    # at most READ_BYTES of the file mapped here, not a stripe.
                    for lo in range(i * STRIPE, min(size, (i + 1) * STRIPE), READ_BYTES):
                        hi = min(size, lo + READ_BYTES, (i + 1) * STRIPE)
                        with view[lo:hi] as part:
                            self._hasher.update(part)
                        self._mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        finally:
            for t in threads:
                t.join()

    def finish(self) -> str:
        """Hash whatever the runner did not read, and return the digest."""
        if self._background is not None:
            self._background.join()
            if self._mapping is not None:
                try:
                    self._mapping.close()
                except BufferError:  # a view of it is still alive: unmapped when collected
                    pass
                self._mapping = None
            if self._background_error is not None:
                raise self._background_error
            # Bytes appended after the mapping was taken (never by the store,
            # which replaces by rename) still count, so the size check fails.
            self._f.seek(self.bytes_read)
            while chunk := self._f.read(1024 * 1024):
                self._hasher.update(chunk)
                self.bytes_read += len(chunk)
            return self._hasher.hexdigest()
        while self.read(1024 * 1024):
            pass
        return self._hasher.hexdigest()
