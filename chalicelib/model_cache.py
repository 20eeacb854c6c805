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
* Concurrent first requests for one model in one process load it once; a
  request waiting for another's load waits no longer than its own deadline
  (or ``MODEL_LOAD_TIMEOUT_SECONDS`` and a margin without one).
* Entries are keyed by (model, version) and checked by sha256, so a pinned
  version (``"version": n``) and the current one are both served warm.
* Models run in the inference worker (:mod:`chalicelib.runners.supervisor`):
  when a bound kills that worker its sessions are gone, so an entry whose
  runner is no longer valid is dropped and reloaded on demand.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from chalicelib import deadline
from chalicelib.errors import DeadlineExceeded, NotFound, StoreCorrupt
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits, LoadedModel, Runner, runner_module
from chalicelib.store import Manifest, Store
from chalicelib.store.errors import VersionNotKept
from chalicelib.store.streaming import HashingReader
from chalicelib.versions import manifest_at, not_kept

# A cached runner's key: the model and the version number it was loaded from.
Key = tuple[ObjectRef, int]

_LOAD_WAIT_MARGIN = 2.0  # seconds past another load's own bound before a waiter gives up


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
        self._entries: OrderedDict[Key, CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Key, threading.Lock] = {}

    def get(
        self, store: Store, ref: ObjectRef, file_id: str | None = None, version: int | None = None
    ) -> tuple[CachedModel, bool]:
        """The runner for ``ref`` (its kept ``version``, ``None``: the current
        one) and whether it came from the cache."""
        current = manifest_at(store, ref, version, file_id)
        cached = self._lookup((ref, current.version), current)
        if cached is not None:
            return cached, True
        with self._lock:
            load_lock = self._loading.setdefault((ref, current.version), threading.Lock())
        if not load_lock.acquire(blocking=False):
            # Bounded like the load itself: the other request's load stops
            # at its own deadline, this one never waits past its own.
            wait = deadline.remaining(self.limits.load_timeout_seconds + _LOAD_WAIT_MARGIN)
            if not load_lock.acquire(timeout=wait):
                raise DeadlineExceeded(
                    "load", f"Model '{ref.name}' is still being loaded by another request; retry later"
                )
            # Another thread loaded it while we waited, perhaps a newer version
            # (an uncontended load skips this EFS read: the manifest is fresh).
            current = manifest_at(store, ref, current.version if version is not None else None, file_id)
        with _held(load_lock):
            cached = self._lookup((ref, current.version), current)
            if cached is not None:
                return cached, True
            self._make_room(current.size)
            loaded = self._load(store, ref, file_id, version)
            # Loading the current version: the versions it no longer keeps are never served again.
            self._insert((ref, loaded.manifest.version), loaded, loaded.manifest.kept() if version is None else None)
            return loaded, False

    def _lookup(self, key: Key, current: Manifest) -> CachedModel | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not entry.runner.valid():
                del self._entries[key]  # its worker was replaced: reload
                return None
            if entry is not None and entry.manifest.sha256 == current.sha256:
                self._entries.move_to_end(key)
                return entry
            return None

    def _load(self, store: Store, ref: ObjectRef, file_id: str | None, version: int | None = None) -> CachedModel:
        started = time.perf_counter()
        try:
            with store.open(ref, version) as (manifest, f):
                reader = HashingReader(f)
                try:
                    runner = runner_module(ref.name, manifest.format).load(LoadedModel(manifest, reader, self.limits))  # type: ignore[arg-type]
                except Exception:
                    # A torn or tampered file is reported as such, not as a
                    # format error of whatever the runner tripped over.
                    self._verify(ref, manifest, reader)
                    raise
                self._verify(ref, manifest, reader)
        except FileNotFoundError:
            raise NotFound(file_id) from None
        except VersionNotKept as exc:
            raise not_kept(ref, exc, file_id) from None
        return CachedModel(manifest, runner, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _verify(ref: ObjectRef, manifest: Manifest, reader: HashingReader) -> None:
        digest = reader.finish()
        if digest != manifest.sha256 or reader.bytes_read != manifest.size:
            raise StoreCorrupt(f"Model '{ref.name}' does not match its manifest; it was not served")

    def _insert(self, key: Key, loaded: CachedModel, kept: Collection[int] | None = None) -> None:
        with self._lock:
            self._entries.pop(key, None)
            for stale in [k for k in self._entries if kept is not None and k[0] == key[0] and k[1] not in kept]:
                del self._entries[stale]
            if loaded.runner.nbytes > self.budget_bytes:
                return  # served once, too big to keep
            self._entries[key] = loaded
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


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    """Release an already acquired ``lock`` when the block ends."""
    try:
        yield
    finally:
        lock.release()
