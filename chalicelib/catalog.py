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

import re
from typing import Any, Mapping

from chalicelib import model_check, paging
from chalicelib.errors import NotFound
from chalicelib.names import MODELS, ObjectRef, is_valid_name, parse_path_name
from chalicelib.store import Manifest, Store
from chalicelib.store.status import READY, StatusRecord

# The sections of a listing, in order: storable names, then rejected keys.
NAMED, REJECTED_KEYS = 0, 1


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


def _valid_cursor(section: int, key: str) -> bool:
    if section == NAMED:
        return is_valid_name(key)
    return section == REJECTED_KEYS and re.fullmatch(r"[0-9a-f]{40}", key) is not None


def page_request(params: Mapping[str, Any] | None, kind: str = MODELS) -> paging.PageRequest:
    """``GET /models``' query parameters (``limit``, ``next``), or InvalidRequest."""
    return paging.parse(params, kind, _valid_cursor)


def list_models(store: Store, kind: str = MODELS, request: paging.PageRequest | None = None) -> dict[str, Any]:
    """One page of names with their state (the GET /models body): names by
    code point (ready ones with any newer pending or failed attempt, and names
    that never landed), then S3 keys whose names could not be stored (``name``
    null, ``id`` a hash). ``next`` is there when more may follow.

    The names come from directory listings (the manifests' and the status
    records'), so a page reads only the manifests and records it shows.
    """
    request = request or paging.PageRequest(paging.DEFAULT_LIMIT, None)
    with_manifest, with_record = set(store.names(kind)), set(store.status.names(kind))

    def load(section: int, key: str) -> dict[str, Any] | None:
        if section == REJECTED_KEYS:
            rejected = store.status.rejected_by_id(key)
            return entry(None, rejected) if rejected is not None and rejected.key.startswith(kind + "/") else None
        if not is_valid_name(key):
            return None  # not a name the store writes (debris, or planted)
        ref = ObjectRef(kind, key)
        manifest = store.manifest(ref) if key in with_manifest else None
        record = store.status.get(ref) if key in with_record else None
        return entry(manifest, record) if manifest is not None or record is not None else None

    named = sorted(with_manifest | with_record)
    page = paging.paginate(kind, (named, store.status.rejected_ids()), load, request)
    body: dict[str, Any] = {"models": page.items, "count": len(page.items)}
    if page.next is not None:
        body["next"] = page.next
    return body


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
