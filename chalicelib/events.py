"""S3 ObjectCreated events -> the same ingest path as POST /ingest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import unquote_plus

from chalicelib import deadline, observability, s3
from chalicelib.config import Settings
from chalicelib.errors import FileTooLarge, InvalidRequest, S3NotFound, ServiceError
from chalicelib.ingest import IngestResult, ingest_s3
from chalicelib.names import ObjectRef, parse_key
from chalicelib.store import Store

log = logging.getLogger(__name__)


class RetryableEventError(Exception):
    """Some records failed for a reason a retry may cure; Lambda retries the event."""


@dataclass(frozen=True)
class RecordOutcome:
    """What happened to one record of an event."""

    key: str
    status: str  # created | updated | exists | skipped | failed; removals: deleted | kept | cleared | absent
    detail: str = ""


def records(event: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """``(bucket, decoded key)`` of every record; keys arrive URL-encoded."""
    for record in event.get("Records") or []:
        about = record.get("s3") or {}
        bucket = (about.get("bucket") or {}).get("name", "")
        key = unquote_plus((about.get("object") or {}).get("key", ""))
        yield bucket, key


def handle_event(
    store: Store, settings: Settings, event: dict[str, Any], context: object = None
) -> list[RecordOutcome]:
    """Ingest every record, under the invocation's deadline (Lambda's
    remaining time in ``context`` less DEADLINE_MARGIN_SECONDS; unbounded
    without a context, where no function timeout can cut it short).
    Every failure is recorded on the store (the name's ``failed`` state, or
    the key's when its name cannot be stored) and logged. Permanent problems
    (bad key, too large, gone) are then skipped; transient ones (a deadline
    reached included) raise after all records were tried, so that Lambda's
    retry redoes only what is missing (the rest says exists)."""
    seconds = deadline.invocation_seconds(context, settings.deadline_margin_seconds, None)
    with deadline.bounded(seconds):
        return _handle(store, settings, event)


def _handle(store: Store, settings: Settings, event: dict[str, Any]) -> list[RecordOutcome]:
    outcomes: list[RecordOutcome] = []
    for bucket, key in records(event):
        if settings.bucket and bucket != settings.bucket:
            outcomes.append(RecordOutcome(key, "skipped", "event for another bucket"))
            continue
        try:
            ref = _parse(store, settings, key)
            # Failures are recorded on the store by ingest_s3 (the name's state).
            result = ingest_s3(store, settings, ref, key)
            if isinstance(result, IngestResult):  # never handed off: not sync
                outcomes.append(RecordOutcome(key, result.status, f"version {result.manifest.version}"))
        except (InvalidRequest, FileTooLarge, S3NotFound) as exc:
            outcomes.append(RecordOutcome(key, "skipped", exc.message))
        except ServiceError as exc:
            outcomes.append(RecordOutcome(key, "failed", exc.message))
    return report_or_retry(outcomes, "s3 event record")


def report_or_retry(outcomes: list[RecordOutcome], what: str) -> list[RecordOutcome]:
    """Log each record's outcome; if any failed, raise :class:`RetryableEventError`
    (after every record was tried) so that Lambda retries the event."""
    for o in outcomes:
        level = logging.ERROR if o.status == "failed" else logging.INFO
        log.log(level, "%s %s: %s %s", what, o.key[:300], o.status, o.detail)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise RetryableEventError(f"{len(failed)} of {len(outcomes)} records failed; Lambda will retry")
    return outcomes


def _parse(store: Store, settings: Settings, key: str) -> ObjectRef:
    """The key's name, or the key recorded as failed (GET /models lists it)
    unless it is gone already (a late event: its removal came first)."""
    try:
        return parse_key(key)
    except InvalidRequest as exc:
        bucket = settings.bucket
        try:
            gone = not key_exists(settings, bucket, key) if bucket else False
        except ServiceError:
            gone = False  # unknown: recorded (its removal clears it)
        try:
            if not gone:
                store.status.rejected(key, exc)
        except (ServiceError, OSError):
            log.exception("could not record the rejected key %s", key[:300])
        raise


def key_exists(settings: Settings, bucket: str, key: str) -> bool:
    """Whether S3 holds an object at ``key`` now (a HEAD: strongly consistent)."""
    try:
        s3.head(settings, bucket, key)
    except S3NotFound:
        return False
    return True


def observe_events(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice ``s3`` middleware: every S3 event is one observed invocation.

    The summary line counts the records and each outcome status.
    """
    context = getattr(event, "context", None)
    rid = str(getattr(context, "aws_request_id", None) or "-")
    with observability.invocation(rid, "s3:ObjectCreated") as inv:
        raw = event.to_dict() if hasattr(event, "to_dict") else {}
        inv.outcome["records"] = len(raw.get("Records") or [])
        result = get_response(event)
        if isinstance(result, list):
            statuses: dict[str, int] = {}
            for item in result:
                status = item.get("status", "?") if isinstance(item, dict) else "?"
                statuses[status] = statuses.get(status, 0) + 1
            inv.outcome["recordStatuses"] = statuses
        inv.outcome["outcome"] = "ok"
        return result
