"""The model catalogue: what the store holds, from its manifests."""
from __future__ import annotations

from typing import Any

from chalicelib.errors import NotFound
from chalicelib.names import MODELS, ObjectRef, parse_path_name
from chalicelib.store import Manifest, Store


def describe(manifest: Manifest) -> dict[str, Any]:
    """A manifest as the catalogue shows it."""
    return {
        "name": manifest.key.split("/", 1)[1],
        "key": manifest.key,
        "fileId": manifest.fileId,
        "sizeBytes": manifest.size,
        "sha256": manifest.sha256,
        "version": manifest.version,
        "source": manifest.source,
        "created": manifest.created,
        "updated": manifest.updated,
    }


def list_models(store: Store) -> dict[str, Any]:
    """Every complete model in the store, by name (the GET /models body)."""
    models = [describe(m) for m in store.list(MODELS)]
    return {"models": models, "count": len(models)}


def get_model(store: Store, name: str) -> dict[str, Any]:
    """One model's manifest, or the documented 404 ``NOT_FOUND``.

    ``name`` is the raw path parameter, still percent-encoded.
    """
    name = parse_path_name(name, "name")
    ref = ObjectRef(MODELS, name)
    manifest = store.manifest(ref)
    if manifest is None:
        raise NotFound(None, f"Model '{name}' not found on EFS")
    return describe(manifest)
