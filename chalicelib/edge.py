"""The process's settings and what is built from them, built once, at the edge.

The handlers (``app.py``, and ``devstack``/``bench`` standing in for them)
take the settings, the store and the warm model cache from here and pass
them in; every function below them takes what it needs as an argument, so
nothing below the edge reads the environment. The S3 and SQS clients are
built lazily from the settings they are handed (``chalicelib.s3``,
``chalicelib.jobs.queue``) and boto3's own endpoint variables.

:func:`reset` is the one reset: it forgets all of it, and every other
per-process cache of chalicelib, so the next call reads the environment
again. Call it after changing the environment (tests, a local stack that
sets variables after ``app.py`` was imported). ``tests/unit/test_edge.py``
fails when a cache is added to chalicelib and not listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from chalicelib import model_check, s3
from chalicelib.config import Settings, load_settings
from chalicelib.jobs import queue, worker
from chalicelib.model_cache import ModelCache
from chalicelib.runners import Limits
from chalicelib.store import Store
from chalicelib.store.fs import DirSync


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use and then kept."""
    return load_settings()


@lru_cache(maxsize=1)
def get_store() -> Store:
    """The process's store, built from the settings on first use."""
    settings = get_settings()
    return Store(
        settings.efs_root,
        lock_timeout=settings.lock_timeout_seconds,
        dir_sync=DirSync(settings.store_dir_fsync),
        versions_kept=settings.model_versions_kept,
    )


@lru_cache(maxsize=1)
def model_cache() -> ModelCache:
    """The process's warm model cache (lives as long as the Lambda container)."""
    settings = get_settings()
    return ModelCache(settings.model_cache_bytes, Limits.from_settings(settings))


# What reset() clears: every per-process cache of chalicelib built from the
# environment (the settings and what was built from them), and the memos
# that hold on to one of those (a Store, a job's plan on the store).
CACHES: tuple[Any, ...] = (
    get_settings,
    get_store,
    model_cache,
    model_check._legacy,  # keyed by Store: holds the old one
    worker._plan,  # keyed by the store's root
)
# Module state reset() forgets, and how: boto3 read its endpoint (and the
# clients their timeouts) when they were built.
RESETS: dict[str, Callable[[], None]] = {
    "chalicelib.s3._clients": s3.reset_clients,
    "chalicelib.jobs.queue._client": queue.reset_client,
}

# Per-process state reset() keeps, and why: nothing in it comes from the
# environment, or forgetting it would break what holds it.
KEPT: dict[str, str] = {
    "chalicelib.runners.supervisor.shared": "the inference worker's parent: each call brings its own sizing",
    "chalicelib.runners.onnx_locale.exists": "which locales this machine has",
    "chalicelib.runners.onnx_locale._libc": "the C library",
    "chalicelib.runners.ort_env._registered_cap": "the worker's allocator cap, fixed once onnxruntime registered it",
    "chalicelib.runners.ort_env._empty_dir": "the worker's empty directory for external data",
    "chalicelib.runners.ort_env._libc": "the C library (mallopt, malloc_trim)",
    "chalicelib.runners.ort_env._statm": "the worker's own /proc/self/statm",
    "chalicelib.store.streaming._libc_sync_file_range": "the C library's sync_file_range",
    "chalicelib.store.fs._detected": "which paths are NFS mounts",
    "chalicelib.store.locks._files": "lock files open per path: closing one would drop a lock a writer holds",
    "chalicelib.observability._cold": "whether this process has answered an invocation yet",
    "chalicelib.observability._namespace": "set with the logging at app.py's import (observability.configure_metrics)",
    "chalicelib.predict._archive_pool": "the threads that archive results to S3",
    "chalicelib.names._valid": "whether a name is valid: a pure function of the name",
}


def reset() -> None:
    """Forget the settings and everything built from them (:data:`CACHES`, :data:`RESETS`)."""
    for cached in CACHES:
        cached.cache_clear()
    for forget in RESETS.values():
        forget()
