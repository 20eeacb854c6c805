"""Uploads past the gateway limits, and the model catalogue.

API Gateway takes at most 10 MB per request and Lambda 6 MB per payload,
so large models go straight to S3 with a presigned PUT URL; the bucket's
ObjectCreated event then ingests them through the usual S3 handler, and
the client watches ``GET /models/{name}`` until the manifest appears.

The URL is SigV4 and signs ``Content-Length``: S3 itself refuses a body of
any other size, so the size checked here against ``MAX_INGEST_BYTES`` is
the size that lands. Presigning is a local computation (no S3 call), but
the URL only works if the API function's role may ``s3:PutObject`` on
``models/*`` and ``inputs/*``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Mapping

from chalicelib.config import ConfigError, Settings, human_size
from chalicelib.errors import FileTooLarge, InvalidRequest, NotFound
from chalicelib.names import MODELS, ObjectRef, parse_key, validate_name
from chalicelib.store import Manifest, Store

#: SigV4 presigned URLs live at most 7 days.
MAX_EXPIRES_SECONDS = 7 * 24 * 3600

_clients: dict[tuple[str, ...], Any] = {}
_clients_lock = threading.Lock()


def _presign_client() -> Any:
    """An S3 client that signs with SigV4 (boto3 still presigns S3 with
    SigV2 by default, which cannot sign Content-Length and is deprecated).

    Keyed by the endpoint variables so that a changed endpoint (tests, local
    runs) gets a matching client; boto3 is imported only here.
    """
    key = (os.environ.get("AWS_ENDPOINT_URL_S3", ""), os.environ.get("AWS_ENDPOINT_URL", ""),
           os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", ""))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.session.Session().client("s3", config=Config(signature_version="s3v4"))
            _clients[key] = client
        return client


def parse_upload(body: Mapping[str, Any], max_bytes: int) -> tuple[ObjectRef, int]:
    """Validate ``{"key": "models/<name>"|"inputs/<name>", "sizeBytes": N}``."""
    unknown = sorted(k for k in body if k not in ("key", "sizeBytes"))
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(repr(k[:40]) for k in unknown[:5])}")
    if "key" not in body or "sizeBytes" not in body:
        raise InvalidRequest("Request body must contain 'key' and 'sizeBytes' fields")
    ref = parse_key(body["key"], "key")
    size = body["sizeBytes"]
    # bool is an int subclass; true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRequest("'sizeBytes' must be a non-negative integer")
    if size > max_bytes:
        raise FileTooLarge(human_size(max_bytes))
    return ref, size


def presign_upload(settings: Settings, ref: ObjectRef, size: int) -> dict[str, Any]:
    """A presigned PUT for ``ref`` of exactly ``size`` bytes: the /uploads body."""
    if not settings.bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET); ingest with 'data' instead")
    expires = settings.upload_url_expires_seconds
    if expires > MAX_EXPIRES_SECONDS:
        raise ConfigError(f"UPLOAD_URL_EXPIRES_SECONDS must be <= {MAX_EXPIRES_SECONDS}, got {expires}")
    url = _presign_client().generate_presigned_url(
        "put_object",
        Params={"Bucket": settings.bucket, "Key": ref.key, "ContentLength": size},
        ExpiresIn=expires,
        HttpMethod="PUT",
    )
    return {
        "url": url,
        "method": "PUT",
        "key": ref.key,
        "headers": {"Content-Length": str(size)},
        "sizeBytes": size,
        "expiresIn": expires,
        "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires)),
        "statusUrl": f"/models/{ref.name}" if ref.kind == MODELS else None,
    }


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
    """One model's manifest, or the documented 404 ``NOT_FOUND``."""
    ref = ObjectRef(MODELS, validate_name(name, "name"))
    manifest = store.manifest(ref)
    if manifest is None:
        raise NotFound(None, f"Model '{name}' not found on EFS")
    return describe(manifest)
