"""Deleting models and inputs: ``DELETE /models|inputs/{name}`` and S3 ``ObjectRemoved`` events.

S3 is the system of record, so a delete through the API deletes the S3
object too (otherwise the next event or re-ingest would bring it back); on a
versioned bucket that adds a delete marker and the old versions stay
recoverable. Both paths delete under the name's writer lock
(:meth:`Store.delete`), so no ingest of the same name interleaves:

* the API deletes the S3 object(s) first, then the store copy; a failure
  of the S3 delete leaves everything in place (a clear 5xx, retry);
* an ``ObjectRemoved`` event deletes the store copy only if no S3 object it
  came from exists any more (a HEAD under the lock). A removed event that
  arrives after the key was written again (events are unordered, and
  retried) therefore keeps the newer copy. The event's ``sequencer`` could
  order events of one key, but only against other events: an ingest
  through ``POST /ingest`` has none, and the store would have to keep the
  last sequencer per key. The HEAD asks S3 (strongly consistent) what is
  true now, which is what the copy must follow.
"""

from __future__ import annotations

from typing import Any

from chalicelib import deadline, s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound, S3NotFound, ServiceError
from chalicelib.events import RecordOutcome
from chalicelib.names import INPUTS, MODELS, ObjectRef, parse_key, parse_path_name
from chalicelib.store import Manifest, Store

REMOVED_PREFIX = "ObjectRemoved:"
_LABEL = {MODELS: "Model", INPUTS: "Input"}


def s3_keys(settings: Settings, ref: ObjectRef, manifest: Manifest) -> list[str]:
    """The S3 keys the stored copy of ``ref`` may come from: its own key and,
    if it was ingested from another spelling (NFD), that key too."""
    keys = [ref.key]
    prefix = f"s3://{settings.bucket}/"
    if manifest.source.startswith(prefix):
        source_key = manifest.source[len(prefix) :]
        if source_key not in keys:
            keys.append(source_key)
    return keys


def delete(store: Store, settings: Settings, kind: str, raw_name: str) -> dict[str, Any]:
    """``DELETE /<kind>/{name}``: the S3 object(s) then the store copy; the documented body.

    ``raw_name`` is the path parameter, still percent-encoded. 404
    ``NOT_FOUND`` when the store holds no such object.
    """
    name = parse_path_name(raw_name, "name")
    ref = ObjectRef(kind, name)

    def delete_in_s3(manifest: Manifest) -> bool:
        if settings.bucket:
            for key in s3_keys(settings, ref, manifest):
                s3.delete(settings.bucket, key)
        return True

    manifest = store.delete(ref, before=delete_in_s3)
    if manifest is None:
        raise NotFound(None, f"{_LABEL[kind]} '{name}' not found on EFS")
    return {
        "status": "deleted",
        "key": ref.key,
        "name": name,
        "fileId": manifest.fileId,
        "version": manifest.version,
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
    """Delete the store copy of every removed key that is really gone from S3.

    Outcomes: ``deleted``, ``kept`` (the key exists again), ``absent`` (no
    copy), ``skipped`` (not a name of the store), ``failed`` (transient;
    raised as :class:`RetryableEventError` after every record was tried).
    """
    from chalicelib.events import records, settle  # the same decoding as ObjectCreated

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
    return settle(outcomes, "s3 removed record")


def _remove_one(store: Store, settings: Settings, key: str) -> RecordOutcome:
    ref = parse_key(key)
    bucket = settings.bucket
    if not bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET)")
    kept: list[str] = []

    def gone_from_s3(manifest: Manifest) -> bool:
        for candidate in dict.fromkeys([key, *s3_keys(settings, ref, manifest)]):
            try:
                s3.head(bucket, candidate)
            except S3NotFound:
                continue
            kept.append(candidate)
            return False
        return True

    manifest = store.delete(ref, before=gone_from_s3)
    if manifest is not None:
        return RecordOutcome(key, "deleted", f"version {manifest.version}")
    if kept:
        return RecordOutcome(key, "kept", "the S3 object exists again; the newer copy stays")
    return RecordOutcome(key, "absent", "no copy in the store")
