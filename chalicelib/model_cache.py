"""The warm model cache: loaded runners kept in the process between requests.

* Bounded in bytes (``MODEL_CACHE_BYTES``), least recently used out first.
  A runner counts the memory it was measured to hold once loaded (not its
  file size); room for at least the file is made before a load.
* Each request reads the model's manifest once (a small file, lock-free) and
  reuses the runner only if the manifest's sha256 still matches, so a model
  replaced by another function is noticed on the next request.
* A model is verified against its manifest while it is loaded (the bytes
  are hashed as the runner reads them), so a half-written or mismatching
  file is never served.
* Concurrent first requests for one model in one process load it once.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO

from chalicelib.errors import NotFound, StoreCorrupt
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits, LoadedModel, Runner, runner_module
from chalicelib.store import Manifest, Store


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
        started = threading.Event()
        self._background = threading.Thread(
            target=self._hash_mapped, args=(fd, size, started), name="model-sha256", daemon=True)
        self._background.start()
        # Wait until the thread is inside hashlib (which drops the GIL for the
        # whole call): native loaders may hold the GIL while they parse, and
        # a thread still waiting for it would not overlap at all.
        started.wait()
        return path

    def _hash_mapped(self, fd: int, size: int, started: threading.Event) -> None:
        try:
            if size:
                # One update over a mapping: a single GIL-free call, no copy.
                with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
                    started.set()
                    self._hasher.update(mapped)
            self.bytes_read = size
        except BaseException as exc:  # reported by finish(), never lost
            self._background_error = exc
        finally:
            started.set()

    def finish(self) -> str:
        """Hash whatever the runner did not read, and return the digest."""
        if self._background is not None:
            self._background.join()
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


@dataclass
class CachedModel:
    """A loaded runner and the manifest it was verified against."""

    manifest: Manifest
    runner: Runner
    load_ms: float


class ModelCache:
    """Process-local LRU of runners keyed by model, bounded by ``budget_bytes``."""

    def __init__(self, budget_bytes: int, limits: Limits | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.limits = limits or Limits(model_memory_bytes=budget_bytes)
        self._entries: OrderedDict[ObjectRef, CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[ObjectRef, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, store: Store, ref: ObjectRef, file_id: str | None = None) -> tuple[CachedModel, bool]:
        """The runner for ``ref`` and whether it came from the cache."""
        current = store.manifest(ref)
        if current is None:
            raise NotFound(file_id)
        cached = self._lookup(ref, current)
        if cached is not None:
            return cached, True
        with self._lock:
            load_lock = self._loading.setdefault(ref, threading.Lock())
        with load_lock:
            # Another thread may have loaded it while we waited.
            current = store.manifest(ref) or current
            cached = self._lookup(ref, current)
            if cached is not None:
                return cached, True
            self._make_room(current.size)
            loaded = self._load(store, ref, file_id)
            self._insert(ref, loaded)
            return loaded, False

    def _lookup(self, ref: ObjectRef, current: Manifest) -> CachedModel | None:
        with self._lock:
            entry = self._entries.get(ref)
            if entry is not None and entry.manifest.sha256 == current.sha256:
                self._entries.move_to_end(ref)
                self.hits += 1
                return entry
            self.misses += 1
            return None

    def _load(self, store: Store, ref: ObjectRef, file_id: str | None) -> CachedModel:
        started = time.perf_counter()
        try:
            with store.open(ref) as (manifest, f):
                reader = HashingReader(f)
                try:
                    runner = runner_module(ref.name).load(
                        LoadedModel(manifest, reader, self.limits))  # type: ignore[arg-type]
                except Exception:
                    # A torn or tampered file is reported as such, not as a
                    # format error of whatever the runner tripped over.
                    self._verify(ref, manifest, reader)
                    raise
                self._verify(ref, manifest, reader)
        except FileNotFoundError:
            raise NotFound(file_id) from None
        return CachedModel(manifest, runner, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _verify(ref: ObjectRef, manifest: Manifest, reader: HashingReader) -> None:
        digest = reader.finish()
        if digest != manifest.sha256 or reader.bytes_read != manifest.size:
            raise StoreCorrupt(f"Model '{ref.name}' does not match its manifest; it was not served")

    def _insert(self, ref: ObjectRef, loaded: CachedModel) -> None:
        with self._lock:
            self._entries.pop(ref, None)
            if loaded.runner.nbytes > self.budget_bytes:
                return  # served once, too big to keep
            self._entries[ref] = loaded
            total = sum(e.runner.nbytes for e in self._entries.values())
            while total > self.budget_bytes and len(self._entries) > 1:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.runner.nbytes

    def _make_room(self, incoming: int) -> None:
        """Evict least recently used runners until ``incoming`` bytes fit:
        the memory of a model being loaded counts before it is measured."""
        with self._lock:
            total = sum(e.runner.nbytes for e in self._entries.values())
            while self._entries and total + incoming > self.budget_bytes:
                _, evicted = self._entries.popitem(last=False)
                total -= evicted.runner.nbytes

    def clear(self) -> None:
        """Drop every cached runner."""
        with self._lock:
            self._entries.clear()
