"""The model catalogue: what the store holds, and the state of every ingest.

A name's ``state`` is that of its latest ingest attempt:

* ``ready``: the latest attempt landed; the manifest's fields describe it;
* ``pending``: an ingest was accepted (``202``) and has not landed yet;
* ``failed``: the latest attempt failed; ``error`` says why and when.

A pending or failed attempt never hides a version that is ready: the
current ready version's fields (``fileId``, ``version``, ``sha256``...)
are there too, and ``readyVersion`` says which it is (``null``: none yet).
"""

from __future__ import annotations

from typing import Any

from chalicelib import model_check
from chalicelib.errors import NotFound
from chalicelib.names import MODELS, ObjectRef, parse_path_name
from chalicelib.store import Manifest, Store
from chalicelib.store.status import READY, StatusRecord


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
        # Recorded at ingest (null for inputs, and for models stored before
        # they were recorded: GET /models/{name} reads those from the bytes).
        "format": manifest.format,
        "signature": manifest.signature,
    }


def entry(manifest: Manifest | None, record: StatusRecord | None) -> dict[str, Any]:
    """One name's catalogue entry: its state, with its ready version if any."""
    body: dict[str, Any] = {}
    if record is not None:
        body.update({"name": record.name, "key": record.key, **record.describe()})
        if record.id is not None:
            body["id"] = record.id  # a key whose name could not be stored
    else:
        body["state"] = READY
    if manifest is not None:
        body.update({**describe(manifest), "state": body["state"]})
        if record is not None:
            body["key"] = record.key  # the key of the latest attempt
    body["readyVersion"] = manifest.version if manifest is not None else None
    return body


def list_models(store: Store, kind: str = MODELS) -> dict[str, Any]:
    """Every name with its state (the GET /models body): ready objects by name
    (with any newer pending or failed attempt), names that never landed, then
    S3 keys whose names could not be stored (``name`` null, ``id`` a hash)."""
    manifests = {m.key.split("/", 1)[1]: m for m in store.list(kind)}
    records = store.status.list(kind)
    named = {r.name: r for r in records if r.name is not None}
    models = [entry(manifests.get(name), named.get(name)) for name in sorted(manifests.keys() | named.keys())]
    models += [entry(None, r) for r in records if r.name is None]
    return {"models": models, "count": len(models)}


def get_model(store: Store, name: str, kind: str = MODELS) -> dict[str, Any]:
    """One name's state and manifest, or the documented 404 ``NOT_FOUND``.

    ``name`` is the raw path parameter, still percent-encoded.
    """
    name = parse_path_name(name, "name")
    ref = ObjectRef(kind, name)
    manifest = store.manifest(ref)
    record = store.status.get(ref)
    if manifest is None and record is None:
        label = "Model" if kind == MODELS else "Input"
        raise NotFound(None, f"{label} '{name}' not found on EFS")
    body = entry(manifest, record)
    if manifest is not None and kind == MODELS and manifest.signature is None:
        found = model_check.recorded(store, ref, manifest)
        body.update(format=found.format, signature=found.signature.to_json())
    return body
