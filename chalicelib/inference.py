"""The inference use case every edge shares: resolve a model, then infer.

``/predict`` (the seed's JSON, stored and archived) and ``/v2/.../infer``
(the Open Inference Protocol, stateless) differ only at their edges: both
resolve ``(ref, version)`` to a loaded model here, through the warm cache
the edge hands in, and run it through the runner's interface (``predict`` for the
seed's JSON inputs, ``infer`` for decoded arrays). Batch jobs call the same.
"""

from __future__ import annotations

from typing import Any

from chalicelib import observability
from chalicelib.model_cache import CachedModel, ModelCache
from chalicelib.names import ObjectRef
from chalicelib.store import Store


def record_model_lookup(hit: bool, load_ms: float) -> None:
    """Metrics of one model lookup in the warm cache (load time on a miss)."""
    observability.metric("ModelCacheHit", 1 if hit else 0)
    observability.metric("ModelCacheMiss", 0 if hit else 1)
    if not hit:
        observability.metric("ModelLoadMs", round(load_ms, 3), observability.MILLISECONDS)


def resolve(
    models: ModelCache, store: Store, ref: ObjectRef, version: int | None = None, file_id: str | None = None
) -> tuple[CachedModel, bool]:
    """The loaded model ``ref`` at ``version`` (``None``: current) and whether
    it was warm, from the warm cache ``models``; NotFound (naming the kept versions) if there is no such
    model or version. A pinned version is immutable; ``None`` follows the
    current one (see docs/design/versions.md)."""
    cached, hit = models.get(store, ref, file_id, version=version)
    record_model_lookup(hit, cached.load_ms)
    return cached, hit


def infer(model: CachedModel, feeds: dict[str, Any], output_names: list[str] | None = None) -> dict[str, Any]:
    """Run a resolved model on decoded arrays: the named outputs as numpy values."""
    return model.runner.infer(feeds, output_names)
