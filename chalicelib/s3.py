"""S3 access: one lazily built client with bounded retries, and a streaming GET.

boto3 is imported on first use, so handlers that never touch S3 (and cold
starts) do not pay for it. The endpoint comes from boto3's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator

from chalicelib.config import Settings, get_settings
from chalicelib.errors import S3NotFound, S3ObjectChanged, S3Unavailable

CHUNK_BYTES = 1024 * 1024

_client: Any = None
_client_lock = threading.Lock()


def client(settings: Settings | None = None) -> Any:
    """The process's S3 client (thread-safe), created on first use."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                import boto3
                from botocore.config import Config

                s = settings or get_settings()
                _client = boto3.session.Session().client(
                    "s3",
                    config=Config(
                        # SigV4 for presigned URLs too: it signs Content-Length.
                        signature_version="s3v4",
                        # total_max_attempts counts the first try; botocore's
                        # max_attempts would count retries only (one call too many).
                        retries={"mode": "standard", "total_max_attempts": s.s3_max_attempts},
                        connect_timeout=s.s3_connect_timeout,
                        read_timeout=s.s3_read_timeout,
                    ),
                )
    return _client


def reset_client() -> None:
    """Forget the client (tests that change endpoint or settings)."""
    global _client
    with _client_lock:
        _client = None


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about an object."""

    size: int
    etag: str


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _translate(exc: Exception, key: str) -> Exception:
    """Map botocore failures to the service's errors (no internals leak)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = _error_code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            return S3NotFound(key)
        if code in ("412", "PreconditionFailed"):
            return S3ObjectChanged()
        if code in ("403", "AccessDenied"):
            return S3Unavailable("Access to the S3 object was denied")
        if code in ("NoSuchBucket",):
            return S3Unavailable("The configured S3 bucket does not exist")
    return S3Unavailable()


def head(bucket: str, key: str) -> ObjectInfo:
    """Size and ETag of ``key``; :class:`S3NotFound` when absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        r = client().head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise _translate(exc, key) from None
    return ObjectInfo(size=int(r["ContentLength"]), etag=r["ETag"])


def stream(bucket: str, key: str, info: ObjectInfo, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the bytes of exactly the version ``info`` describes, in one GET.

    ``IfMatch`` refuses a replaced object up front; a stream that ends early
    (object deleted mid-copy, connection cut) raises rather than yielding a
    short file. One GET rather than ranged parts: boto3's ranged download is
    no faster against one large object on EFS-bound Lambdas and re-reads on
    moto.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        r = client().get_object(Bucket=bucket, Key=key, IfMatch=info.etag)
    except (BotoCoreError, ClientError) as exc:
        raise _translate(exc, key) from None
    body = r["Body"]
    received = 0
    try:
        while True:
            try:
                chunk = body.read(chunk_bytes)
            except (BotoCoreError, ClientError, OSError, ValueError) as exc:
                raise S3ObjectChanged("S3 transfer was interrupted; nothing was stored") from exc
            if not chunk:
                break
            received += len(chunk)
            yield chunk
    finally:
        body.close()
    if received != info.size:
        raise S3ObjectChanged(
            f"S3 sent {received} of {info.size} bytes; nothing was stored"
        )


def put_bytes(bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
    """Upload a small object (prediction results)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except (BotoCoreError, ClientError) as exc:
        raise _translate(exc, key) from None


def presign_put(bucket: str, key: str, size: int, expires: int) -> str:
    """A SigV4 presigned PUT URL for exactly ``size`` bytes (no S3 call)."""
    url: str = client().generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key, "ContentLength": size},
        ExpiresIn=expires,
        HttpMethod="PUT",
    )
    return url
