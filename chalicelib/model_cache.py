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
* A cold load runs on a loader thread, bounded by its own limits
  (``MODEL_LOAD_TIMEOUT_SECONDS``, ``MAX_MODEL_BYTES``), not by the
  deadline of the request that started it. Concurrent first requests for
  one model in one process join that one load; each waits no longer than
  its own deadline (or the load's bound and a margin without one), then
  answers ``503 MODEL_LOADING`` with ``Retry-After`` while the load goes
  on: a retry finds the model warm or further along. A load that fails is
  reported to the next request that asks for it, once.
* Entries are keyed by (model, version) and checked by sha256, so a pinned
  version (``"version": n``) and the current one are both served warm.
* Models run in the inference worker (:mod:`chalicelib.runners.supervisor`):
  when a bound kills that worker its sessions are gone, so an entry whose
  runner is no longer valid is dropped and reloaded on demand.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

from chalicelib import deadline
from chalicelib.errors import ModelLoading, NotFound, ProcessingFailed, ServiceError, StoreCorrupt
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits, LoadedModel, Runner, runner_module
from chalicelib.store import Manifest, Store
from chalicelib.store.errors import VersionNotKept
from chalicelib.store.streaming import HashingReader
from chalicelib.versions import manifest_at, not_kept

# A cached runner's key: the model and the version number it was loaded from.
Key = tuple[ObjectRef, int]

_LOAD_WAIT_MARGIN = 12.0  # seconds past a load's own bound (a fresh worker's start) before a waiter gives up

log = logging.getLogger(__name__)


class _Load:
    """One model's load in flight on a loader thread, and how it ended."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        self.started = time.monotonic()
        self.done = threading.Event()
        self.result: CachedModel | None = None
        self.error: ServiceError | None = None

    def retry_after(self) -> int:
        """Seconds a client should wait before retrying: about as long again
        as the load has taken so far (at least 1, at most 10)."""
        return min(10, max(1, math.ceil(time.monotonic() - self.started)))


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
        self.limits = limits or Limits(max_model_bytes=budget_bytes, model_cache_bytes=budget_bytes)
        self._entries: OrderedDict[Key, CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Key, _Load] = {}

    def get(
        self, store: Store, ref: ObjectRef, file_id: str | None = None, version: int | None = None
    ) -> tuple[CachedModel, bool]:
        """The runner for ``ref`` (its kept ``version``, ``None``: the current
        one) and whether it came from the cache.

        A cold load runs on a loader thread; this request waits for it no
        longer than its own deadline, then answers :class:`ModelLoading`
        (503) while the load goes on (within the load's own bounds), so a
        retry finds the model warm or further along."""
        current = manifest_at(store, ref, version, file_id)
        key = (ref, current.version)
        cached = self._lookup(key, current)
        if cached is not None:
            return cached, True
        result: CachedModel | None = None
        started = False
        for _ in range(2):  # twice at most: an older version's load may be in flight
            load, started = self._join(store, key, file_id, current, version)
            wait = deadline.remaining(self.limits.load_timeout_seconds + _LOAD_WAIT_MARGIN)
            if not load.done.wait(wait):
                raise ModelLoading(ref.name, load.retry_after())
            with self._lock:
                if self._loading.get(key) is load:
                    del self._loading[key]  # a failure is reported once, to one request
            if load.error is not None:
                raise load.error
            result = load.result
            assert result is not None
            if result.manifest.sha256 == current.sha256:
                break
        assert result is not None
        # A request that joined another's load counts as a hit: one miss per load.
        return result, not started

    def start(self, store: Store, ref: ObjectRef) -> _Load | None:
        """Begin loading ``ref``'s current version in the background (preload)
        unless it is warm or already loading; the load, if one was started or joined."""
        current = store.manifest(ref)
        if current is None or self._lookup((ref, current.version), current) is not None:
            return None
        return self._join(store, (ref, current.version), None, current, None)[0]

    def _join(
        self, store: Store, key: Key, file_id: str | None, current: Manifest, version: int | None
    ) -> tuple[_Load, bool]:
        """The load of ``current`` in flight, or a new one on a loader thread
        (and whether it is new)."""
        with self._lock:
            load = self._loading.get(key)
            if load is not None and (load.sha256 == current.sha256 or not load.done.is_set()):
                # One load per model version at a time: a newer one waits for
                # the older load's end (bounded), then loads on the next request.
                return load, False
            load = self._loading[key] = _Load(current.sha256)
        # A fresh context: the load is bounded by its own timeout, not by
        # the deadline of the request that happened to start it.
        thread = threading.Thread(
            target=self._run_load,
            args=(load, store, key, file_id, current.size, version),
            name=f"load-{key[0].name}",
            daemon=True,
        )
        thread.start()
        return load, True

    def _run_load(
        self, load: _Load, store: Store, key: Key, file_id: str | None, size: int, version: int | None
    ) -> None:
        ref = key[0]
        try:
            self._make_room(size)
            loaded = self._load(store, ref, file_id, version)
            # Loading the current version: the versions it no longer keeps are never served again.
            self._insert((ref, loaded.manifest.version), loaded, loaded.manifest.kept() if version is None else None)
            load.result = loaded
            with self._lock:
                if self._loading.get(key) is load:
                    del self._loading[key]  # warm now: later requests hit the cache
        except ServiceError as exc:
            load.error = exc
        except Exception:  # noqa: BLE001 - reported to the waiting request as a 500, logged here
            log.exception("loading '%s' failed", ref.name)
            load.error = ProcessingFailed(f"Model '{ref.name}' failed to load")
        finally:
            load.done.set()

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
