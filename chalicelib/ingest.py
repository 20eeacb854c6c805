"""Ingest: inline data or an S3 object -> the store, hashed in one pass."""
from __future__ import annotations

import time
from dataclasses import dataclass

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

    def to_response(self) -> dict:
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


def ingest_bytes(store: Store, settings: Settings, ref: ObjectRef, data: bytes) -> IngestResult:
    """Store inline data under ``ref``."""
    if len(data) > settings.max_ingest_bytes:
        raise FileTooLarge(human_size(settings.max_ingest_bytes))
    started = time.perf_counter()
    # Same bytes again: answered from the manifest, no lock, no write.
    result = store.put_bytes(ref, data, source="inline", max_bytes=settings.max_ingest_bytes)
    observability.record_ingest(len(data), started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), None)


def ingest_s3(store: Store, settings: Settings, ref: ObjectRef) -> IngestResult:
    """Copy ``s3://MODEL_BUCKET/<ref.key>`` into the store.

    A redelivered event or repeated request for an unchanged object (same
    ETag) answers ``exists`` without copying anything.
    """
    bucket = settings.bucket
    if not bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET); ingest with 'data' instead")
    source = f"s3://{bucket}/{ref.key}"
    started = time.perf_counter()
    info = s3.head(bucket, ref.key)
    if info.size > settings.max_ingest_bytes:
        raise FileTooLarge(human_size(settings.max_ingest_bytes))
    current = store.manifest(ref)
    if current is not None and current.source == source and current.etag == info.etag \
            and current.size == info.size and store.intact(ref, current):
        observability.record_ingest(0, started, "exists")  # unchanged ETag: nothing copied
        return IngestResult(current, "exists", store.path(ref), ref.key)
    try:
        result = store.put(
            ref,
            s3.stream(bucket, ref.key, info),
            source=source,
            etag=info.etag,
            max_bytes=settings.max_ingest_bytes,
            expected_size=info.size,
        )
    except SizeMismatch as exc:  # the object changed (or was cut short) while it was copied
        raise S3ObjectChanged(str(exc)) from None
    observability.record_ingest(info.size, started, result.status)
    return IngestResult(result.manifest, result.status, store.path(ref), ref.key)
