"""Ingest: inline data or an S3 object -> the store, hashed in one pass."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from chalicelib import model_check, observability, s3
from chalicelib.config import Settings
from chalicelib.errors import EmptyObject, FileTooLarge, InvalidRequest, S3NotFound, S3ObjectChanged, ServiceError
from chalicelib.names import MODELS, ObjectRef
from chalicelib.store import Manifest, PutResult, SizeMismatch, Store, status
from chalicelib.store.core import Describe
from chalicelib.store.status import StatusRecord
from chalicelib.validation import check_object_size

log = logging.getLogger(__name__)

# The S3-event function's timeout (.chalice/config.json): a repeated
# POST /ingest {"key"} within it finds the hand-off's copy on its way; after
# it (a copy that died without a word) it hands the key off again.
HAND_OFF_SECONDS = 900.0


@dataclass(frozen=True)
class IngestResult:
    """An ingest's answer, shaped by :meth:`to_response`."""

    manifest: Manifest
    status: str
    efs_path: str
    s3_key: str | None

    def to_response(self) -> dict[str, Any]:
        """The documented ``/ingest`` response body."""
        return {
            "fileId": self.manifest.fileId,
            "efsPath": self.efs_path,
            "s3Key": self.s3_key,
            "sizeBytes": self.manifest.size,
            "status": self.status,
            "version": self.manifest.version,
            "sha256": self.manifest.sha256,
        }


def record_ingest(size_bytes: int, started: float, status: str) -> None:
    """Metrics of one ingest: bytes copied into the store and its duration.

    ``status`` (created/updated/exists) goes to the invocation's log line.
    """
    observability.annotate(ingestStatus=status)
    observability.metric("IngestBytes", size_bytes, observability.BYTES)
    observability.metric(
        "IngestDurationMs", round((time.perf_counter() - started) * 1000, 3), observability.MILLISECONDS
    )


def ingest_bytes(
    store: Store, settings: Settings, ref: ObjectRef, data: bytes, request_id: str | None = None
) -> IngestResult:
    """Store inline data under ``ref``. A failure past validation is
    recorded as the name's ``failed`` state; a success settles it."""
    check_object_size(len(data), settings.max_ingest_bytes)
    started = time.perf_counter()
    attempt = status.stamp()
    try:
        # Same bytes again: answered from the manifest, no lock, no write.
        result = store.put_bytes(
            ref, data, source="inline", max_bytes=settings.max_ingest_bytes, describe=model_description(ref)
        )
    except ServiceError as exc:
        _record_failure(store, ref, ref.key, exc, attempt, request_id)
        raise
    _record_success(store, ref, attempt)
    record_ingest(len(data), started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), None)


def model_description(ref: ObjectRef) -> Describe | None:
    """For a model, the store's validate-and-describe step (run on the new
    bytes before they are committed; a refusal leaves the previous version):
    its format and signature by content, :class:`ModelInvalid` if it cannot
    run here. Inputs are stored as they are."""
    if ref.kind != MODELS:
        return None
    return lambda data: model_check.describe(ref.name, data).manifest_fields()


@dataclass(frozen=True)
class Accepted:
    """An ingest handed to the S3-event function: ``202 accepted``."""

    ref: ObjectRef
    key: str
    size: int
    record: StatusRecord

    STATUS_CODE = 202

    def to_response(self) -> dict[str, Any]:
        """The documented ``202`` body: where to watch the ingest land."""
        return {
            "status": "accepted",
            "statusUrl": status_url(self.ref),
            "key": self.key,
            "name": self.ref.name,
            "sizeBytes": self.size,
            "state": self.record.state,
            "requestId": self.record.requestId,
        }


def status_url(ref: ObjectRef) -> str:
    """``/models/<name>`` or ``/inputs/<name>``, the name percent-encoded."""
    return f"/{ref.kind}/{quote(ref.name, safe='')}"


def hand_off(
    store: Store,
    settings: Settings,
    bucket: str,
    ref: ObjectRef,
    key: str,
    info: s3.ObjectInfo,
    started: int,
    request_id: str | None,
) -> Accepted:
    """Hand an object too large to copy within the API's deadline to the
    S3-event function, through the bucket.

    The pending state goes on the store first, then the object is copied
    onto itself with a marker in its metadata (server-side, no bytes through
    this function): S3 sends the bucket's existing ObjectCreated
    notification for ``models/`` and ``inputs/``, and the S3-event function
    ingests it (and settles the record, or records the failure). A failed
    copy replaces the pending record with the failure before answering.
    """
    record = store.status.pending(ref, key, started, request_id)
    try:
        s3.renotify_created(
            settings,
            bucket,
            key,
            info,
            {
                "efs-ml-ingest-request": request_id or "-",
                "efs-ml-ingest-accepted": record.time,
            },
        )
    except ServiceError as exc:
        _record_failure(store, ref, key, exc, started, request_id)
        raise
    observability.annotate(ingestStatus="accepted")
    return Accepted(ref, key, info.size, record)


def _record_failure(
    store: Store, ref: ObjectRef, key: str, exc: ServiceError, started: int, request_id: str | None
) -> None:
    """Record a failed attempt; a store too broken to record it must not hide ``exc``."""
    try:
        store.status.failed(ref, key, exc, started, request_id)
    except (ServiceError, OSError):
        log.exception("could not record the failed ingest of %s", ref.key[:300])


def _record_success(store: Store, ref: ObjectRef, started: int) -> None:
    try:
        store.status.succeeded(ref, started)
    except (ServiceError, OSError):
        log.exception("could not clear the pending or failed record of %s", ref.key[:300])


def _record_key_gone(store: Store, ref: ObjectRef, started: int, key: str) -> None:
    try:
        store.status.key_gone(ref, started, key)
    except (ServiceError, OSError):
        log.exception("could not clear the record of the deleted key %s", key[:300])


def ingest_s3(
    store: Store,
    settings: Settings,
    ref: ObjectRef,
    key: str | None = None,
    sync: bool = False,
    request_id: str | None = None,
) -> IngestResult | Accepted:
    """Copy ``s3://MODEL_BUCKET/<key>`` into the store as ``ref``.

    ``key`` is the S3 key exactly as given (default ``ref.key``): a key
    uploaded in NFD (as macOS spells ``é``) is read as NFD and stored under
    its NFC name. A redelivered event or repeated request for an unchanged
    object (same ETag) answers ``exists`` without copying anything.

    ``sync`` (a client waiting behind API Gateway): an object over
    ``SYNC_INGEST_MAX_BYTES`` is handed off (:func:`hand_off`, ``202``), and
    a missing or oversized object is the client's 4xx only. Every other
    failure (and every failure of an S3 event, ``sync`` false) is recorded
    as the name's ``failed`` state; a success settles the name's record.
    """
    key = key or ref.key
    bucket = settings.bucket
    if not bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET); ingest with 'data' instead")
    source = f"s3://{bucket}/{key}"
    started = time.perf_counter()
    attempt = status.stamp()
    try:
        info = s3.head(settings, bucket, key)
        check_object_size(info.size, settings.max_ingest_bytes)
        current = store.manifest(ref)
        if current is not None and store.unchanged(ref, current, source=source, etag=info.etag, size=info.size):
            _record_success(store, ref, attempt)
            record_ingest(0, started, "exists")  # unchanged ETag: nothing copied
            return IngestResult(current, "exists", store.path(ref), key)
        handed_off = sync and info.size > settings.sync_ingest_max_bytes
        waiting = _handed_off_already(store, ref, key) if handed_off else None
        if waiting is not None:  # its event is on the way: no second copy
            observability.annotate(ingestStatus="accepted")
            return Accepted(ref, key, info.size, waiting)
        if not handed_off:
            result = _copy(store, settings, bucket, ref, key, info, source)
    except ServiceError as exc:
        if not sync and isinstance(exc, S3NotFound):
            _record_key_gone(store, ref, attempt, key)  # a late event for a deleted key: no ghost, nor one left
        elif not (sync and isinstance(exc, (S3NotFound, FileTooLarge, EmptyObject))):
            _record_failure(store, ref, key, exc, attempt, request_id)
        raise
    if handed_off:  # records its own outcome
        return hand_off(store, settings, bucket, ref, key, info, attempt, request_id)
    _record_success(store, ref, attempt)
    record_ingest(0 if result.status == "exists" else info.size, started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), key)


def _handed_off_already(store: Store, ref: ObjectRef, key: str) -> StatusRecord | None:
    """The pending record of a hand-off of ``key`` still within its event's
    time (the S3-event function's timeout), if any. Whatever the object is
    now, an event for it is on the way: the hand-off's own, or that of the
    upload that replaced it since."""
    record = store.status.get(ref)
    if record is None or record.state != status.PENDING or record.key != key:
        return None
    return record if status.stamp() - record.startedNs < HAND_OFF_SECONDS * 1e9 else None


def _copy(
    store: Store, settings: Settings, bucket: str, ref: ObjectRef, key: str, info: s3.ObjectInfo, source: str
) -> PutResult:
    # closing: whatever ends the copy, the part downloads stop and their threads end here.
    try:
        with closing(s3.stream(settings, bucket, key, info)) as chunks:
            return store.put(
                ref,
                chunks,
                source=source,
                etag=info.etag,
                max_bytes=settings.max_ingest_bytes,
                expected_size=info.size,
                describe=model_description(ref),
            )
    except SizeMismatch as exc:  # the object changed (or was cut short) while it was copied
        raise S3ObjectChanged(str(exc)) from None
