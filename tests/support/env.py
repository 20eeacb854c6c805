"""Per-process state of chalicelib that tests reset when they change the environment."""
from __future__ import annotations


def reset_caches() -> None:
    """Forget per-process state that was built from the environment."""
    from chalicelib import s3
    from chalicelib.config import get_settings
    from chalicelib.predict import model_cache
    from chalicelib.store import get_store

    get_settings.cache_clear()
    get_store.cache_clear()
    model_cache.cache_clear()
    s3.reset_client()
