"""Loading named models at init (``PRELOAD_MODELS``), so the first request finds them warm.

Run from the app's import (Lambda's init phase, 10 s at most): the models
are loaded one after another on one background thread, through the same
model cache and inference worker as a request's load (same bounds: a model
refused or too slow is logged and skipped), and the import waits for them
no longer than ``PRELOAD_INIT_SECONDS``. What is not done by then goes on
in the background: the first request for such a model joins its load
(and answers ``503 MODEL_LOADING`` if it is still not done by its own
deadline). One at a time because the worker runs one load at a time: a
second concurrent load would only queue behind the first, against its own
clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chalicelib.config import Settings
from chalicelib.model_cache import ModelCache
from chalicelib.names import MODELS, ObjectRef, is_valid_name
from chalicelib.store import Manifest, Store

log = logging.getLogger(__name__)


def chosen(spec: str, manifests: list[Manifest], budget: int) -> list[ObjectRef]:
    """The models ``spec`` names, in its order (``*``: every stored model, by
    name, while their file sizes fit ``budget``; a model's loaded footprint
    is at least its file). Names not stored, or not valid names, are left
    out (logged)."""
    spec = spec.strip()
    if not spec:
        return []
    by_name = {m.key.split("/", 1)[-1]: m for m in manifests}
    if spec == "*":
        picked, total = [], 0
        for name in sorted(by_name):
            size = by_name[name].size
            if total + size <= budget:
                picked.append(ObjectRef(MODELS, name))
                total += size
        return picked
    refs = []
    for raw in spec.split(","):
        name = raw.strip().removeprefix(f"{MODELS}/")
        if not name:
            continue
        if not is_valid_name(name) or name not in by_name:
            log.warning("PRELOAD_MODELS names '%s', which is not a stored model; skipped", name[:200])
            continue
        refs.append(ObjectRef(MODELS, name))
    return refs


def start(settings: Settings, store: Store, cache: ModelCache) -> threading.Thread | None:
    """Load the models ``PRELOAD_MODELS`` names on a background thread (None if none)."""
    if not settings.preload_models.strip():
        return None
    refs = chosen(settings.preload_models, store.list(MODELS), settings.model_cache_bytes)
    if not refs:
        return None
    thread = threading.Thread(target=_load_all, args=(store, cache, refs), name="preload", daemon=True)
    thread.start()
    return thread


def at_init(settings: Settings, store: Callable[[], Store], cache: Callable[[], ModelCache]) -> threading.Thread | None:
    """:func:`start` on the process's store and cache (built only if a model
    is named), waiting at most ``PRELOAD_INIT_SECONDS`` for it; never raises
    (a failed preload must not fail the function's init)."""
    if not settings.preload_models.strip():
        return None
    try:
        thread = start(settings, store(), cache())
    except Exception:  # noqa: BLE001 - init goes on; the first request reports real errors
        log.exception("preloading models failed")
        return None
    if thread is not None:
        started = time.monotonic()
        thread.join(settings.preload_init_seconds)
        log.info(
            "preload %s after %.2f s",
            "running on" if thread.is_alive() else "done",
            time.monotonic() - started,
        )
    return thread


def _load_all(store: Store, cache: ModelCache, refs: list[ObjectRef]) -> None:
    for ref in refs:
        load = cache.start(store, ref)
        if load is None:
            continue
        load.done.wait()  # bounded: the load stops at its own MODEL_LOAD_TIMEOUT_SECONDS
        if load.error is not None:
            log.warning("preloading '%s' failed: %s %s", ref.name, load.error.CODE, load.error.message)
