"""Deleting models and inputs: ``DELETE /models|inputs/{name}`` and S3 ``ObjectRemoved`` events.

S3 is the system of record, so a delete through the API deletes the S3
object too (otherwise the next event or re-ingest would bring it back); on a
versioned bucket that adds a delete marker and the old versions stay
recoverable. Both paths delete under the name's writer lock
(:meth:`Store.delete`), so no ingest of the same name interleaves:

* the API deletes the S3 object(s) first, then the store copy; a failure
  of the S3 delete leaves everything in place (a clear 5xx, retry). A name
  with no copy but the record of a pending or failed ingest (a ghost) is
  deleted the same way: its S3 object(s), then the record;
* an ``ObjectRemoved`` event deletes the store copy only if that copy came
  from the removed key (the manifest's ``source``, exactly as that key was
  spelled: an inline copy, never in S3, or a copy from another spelling
  of the name is never deleted by it) and no version of that key exists any
  more (a HEAD under the lock). A removed event that arrives after the key
  was written again (events are unordered, and retried), or after the name
  was re-ingested inline or from another key, therefore keeps the newer
  copy. The HEAD asks S3 (strongly consistent) what is true now, which is
  what the copy must follow; the event's ``sequencer`` orders events of
  one key only against each other (an ingest through ``POST /ingest`` has
  none), and its ``versionId`` adds nothing the HEAD does not say (a
  delete marker hides every version: the key is gone; a version removed
  under a current one leaves the key there). A removed key with no copy
  but a record (a failed ingest, or a key whose name cannot be stored)
  clears that record.
"""

from __future__ import annotations

from typing import Any

from chalicelib import deadline, s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound, ServiceError
from chalicelib.events import RecordOutcome, key_exists
from chalicelib.names import INPUTS, MODELS, ObjectRef, parse_key, parse_path_name
from chalicelib.store import Manifest, Store

REMOVED_PREFIX = "ObjectRemoved:"
_LABEL = {MODELS: "Model", INPUTS: "Input"}


def s3_keys(ref: ObjectRef, source: str | None = None) -> list[str]:
    """The S3 keys the stored copy of ``ref`` may come from: its own key and,
    if it was ingested from another spelling (NFD), that key too."""
    keys = [ref.key]
    if source is not None and source not in keys and _names(source, ref):
        keys.append(source)
    return keys


def source_key(settings: Settings, manifest: Manifest) -> str | None:
    """The key of the configured bucket ``manifest``'s copy came from (``None``: inline)."""
    prefix = f"s3://{settings.bucket}/"
    return manifest.source[len(prefix) :] if manifest.source.startswith(prefix) else None


def _names(key: str, ref: ObjectRef) -> bool:
    try:
        return parse_key(key) == ref
    except InvalidRequest:
        return False


def delete(store: Store, settings: Settings, kind: str, raw_name: str) -> dict[str, Any]:
    """``DELETE /<kind>/{name}``: the S3 object(s) then the store copy; the documented body.

    ``raw_name`` is the path parameter, still percent-encoded. A name with
    no copy but a pending or failed record (a ghost) is deleted too
    (``fileId`` and ``version`` null). 404 ``NOT_FOUND`` when the store
    holds neither.
    """
    name = parse_path_name(raw_name, "name")
    ref = ObjectRef(kind, name)

    def delete_in_s3(source: str | None) -> bool:
        if settings.bucket:
            for key in s3_keys(ref, source):
                s3.delete(settings, settings.bucket, key)
        return True

    manifest = store.delete(ref, before=lambda m: delete_in_s3(source_key(settings, m)))
    if manifest is None:
        record = store.status.get(ref)
        if record is None:
            raise NotFound(None, f"{_LABEL[kind]} '{name}' not found on EFS")
        delete_in_s3(record.key)  # a ghost: its key may be in S3 still (too large, say)
        store.status.clear(ref)
    return {
        "status": "deleted",
        "key": ref.key,
        "name": name,
        "fileId": manifest.fileId if manifest else None,
        "version": manifest.version if manifest else None,
        "s3Deleted": bool(settings.bucket),
    }


def split(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An S3 event split into its (created, removed) records."""
    created: list[Any] = []
    removed: list[Any] = []
    for record in event.get("Records") or []:
        name = str((record or {}).get("eventName", "")) if isinstance(record, dict) else ""
        (removed if name.startswith(REMOVED_PREFIX) else created).append(record)
    return {**event, "Records": created}, {**event, "Records": removed}


def handle_removed(
    store: Store, settings: Settings, event: dict[str, Any], context: object = None
) -> list[RecordOutcome]:
    """Delete the store copy of every removed key it came from that is really gone from S3.

    Outcomes: ``deleted``, ``kept`` (the key exists again, or the copy is
    inline or from another key), ``cleared`` (no copy, but the record of a
    failed or pending attempt of this key, or of this unstorable key, went),
    ``absent`` (nothing of it in the store), ``skipped`` (not a name of the
    store), ``failed`` (transient; raised as :class:`RetryableEventError`
    after every record was tried).
    """
    from chalicelib.events import records, report_or_retry  # the same decoding as ObjectCreated

    seconds = deadline.invocation_seconds(context, settings.deadline_margin_seconds, None)
    outcomes: list[RecordOutcome] = []
    with deadline.bounded(seconds):
        for bucket, key in records(event):
            if settings.bucket and bucket != settings.bucket:
                outcomes.append(RecordOutcome(key, "skipped", "event for another bucket"))
                continue
            try:
                outcomes.append(_remove_one(store, settings, key))
            except InvalidRequest as exc:
                outcomes.append(RecordOutcome(key, "skipped", exc.message))
            except ServiceError as exc:
                outcomes.append(RecordOutcome(key, "failed", exc.message))
    return report_or_retry(outcomes, "s3 removed record")


def _remove_one(store: Store, settings: Settings, key: str) -> RecordOutcome:
    bucket = settings.bucket
    if not bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET)")
    try:
        ref = parse_key(key)
    except InvalidRequest:
        if store.status.get_rejected(key) is None:
            raise
        if key_exists(settings, bucket, key):
            return RecordOutcome(key, "kept", "the S3 object exists again; its record stays")
        store.status.clear_rejected(key)
        return RecordOutcome(key, "cleared", "the record of a key whose name cannot be stored")
    seen: list[Manifest] = []
    present: list[bool] = []

    def came_from_a_gone_key(manifest: Manifest) -> bool:
        seen.append(manifest)
        if source_key(settings, manifest) != key:
            return False  # inline, or from another key: this removal is not its
        present.append(key_exists(settings, bucket, key))
        return not present[0]

    manifest = store.delete(ref, before=came_from_a_gone_key)
    if manifest is not None:
        return RecordOutcome(key, "deleted", f"version {manifest.version}")
    if present:
        return RecordOutcome(key, "kept", "the S3 object exists again; the newer copy stays")
    if seen:
        origin = "inline data" if seen[0].source == "inline" else seen[0].source
        return RecordOutcome(key, "kept", f"the copy came from {origin[:300]}, not this key")
    record = store.status.get(ref)
    if record is None or record.key != key:
        return RecordOutcome(key, "absent", "no copy in the store")
    if key_exists(settings, bucket, key):
        return RecordOutcome(key, "kept", "the S3 object exists again; its record stays")
    store.status.key_gone(ref, record.startedNs, key)  # this record, unless a newer one replaced it
    return RecordOutcome(key, "cleared", f"the {record.state} record of the removed key")
