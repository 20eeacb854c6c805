"""Ingest: inline data or an S3 object -> the store, hashed in one pass."""
from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from chalicelib import observability, s3
from chalicelib.config import Settings, human_size
from chalicelib.errors import FileTooLarge, InvalidRequest, S3ObjectChanged
from chalicelib.names import ObjectRef
from chalicelib.store import Manifest, SizeMismatch, Store


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
    observability.metric("IngestDurationMs", round((time.perf_counter() - started) * 1000, 3),
                         observability.MILLISECONDS)


def ingest_bytes(store: Store, settings: Settings, ref: ObjectRef, data: bytes) -> IngestResult:
    """Store inline data under ``ref``."""
    if len(data) > settings.max_ingest_bytes:
        raise FileTooLarge(settings.max_ingest_bytes)
    started = time.perf_counter()
    # Same bytes again: answered from the manifest, no lock, no write.
    result = store.put_bytes(ref, data, source="inline", max_bytes=settings.max_ingest_bytes)
    record_ingest(len(data), started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), None)


def hand_off(settings: Settings, ref: ObjectRef, key: str, info: s3.ObjectInfo) -> IngestResult:
    """An object too large to copy before the gateway's 29 s.

    This is where the asynchronous path plugs in (issue 11: hand the copy to
    the S3-event function and answer ``202 {"status": "accepted",
    "statusUrl": "/models/<name>"}``). Until then: a clear 413 that says
    where such objects go.
    """
    limit = human_size(settings.sync_ingest_max_bytes)
    raise FileTooLarge(
        settings.sync_ingest_max_bytes,
        f"Object is {info.size} bytes, above the {limit} a synchronous ingest can copy before the "
        "gateway's 29 s timeout (SYNC_INGEST_MAX_BYTES); put it in the bucket (POST /uploads gives "
        f"a URL) and the S3-event function ingests it; watch GET /models/{quote(ref.name, safe='')}",
    )


def ingest_s3(store: Store, settings: Settings, ref: ObjectRef, key: str | None = None,
              sync: bool = False) -> IngestResult:
    """Copy ``s3://MODEL_BUCKET/<key>`` into the store as ``ref``.

    ``key`` is the S3 key exactly as given (default ``ref.key``): a key
    uploaded in NFD (as macOS spells ``é``) is read as NFD and stored under
    its NFC name. A redelivered event or repeated request for an unchanged
    object (same ETag) answers ``exists`` without copying anything. ``sync``
    (a client waiting behind API Gateway): an object over
    ``SYNC_INGEST_MAX_BYTES`` goes to :func:`hand_off` instead.
    """
    key = key or ref.key
    bucket = settings.bucket
    if not bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET); ingest with 'data' instead")
    source = f"s3://{bucket}/{key}"
    started = time.perf_counter()
    info = s3.head(bucket, key)
    if info.size > settings.max_ingest_bytes:
        raise FileTooLarge(settings.max_ingest_bytes)
    current = store.manifest(ref)
    if current is not None and current.source == source and current.etag == info.etag \
            and current.size == info.size and store.intact(ref, current):
        record_ingest(0, started, "exists")  # unchanged ETag: nothing copied
        return IngestResult(current, "exists", store.path(ref), key)
    if sync and info.size > settings.sync_ingest_max_bytes:
        return hand_off(settings, ref, key, info)
    # closing: whatever ends the copy, the part downloads stop and their threads end here.
    try:
        with closing(s3.stream(bucket, key, info, part_bytes=settings.s3_part_bytes,
                               connections=settings.s3_connections,
                               attempts=settings.s3_max_attempts)) as chunks:
            result = store.put(
                ref,
                chunks,
                source=source,
                etag=info.etag,
                max_bytes=settings.max_ingest_bytes,
                expected_size=info.size,
            )
    except SizeMismatch as exc:  # the object changed (or was cut short) while it was copied
        raise S3ObjectChanged(str(exc)) from None
    record_ingest(info.size, started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), key)
