"""Uploads past the gateway limits: presigned S3 PUT URLs.

Lambda takes at most 6 MB per synchronous payload (API Gateway's own 10 MB
never comes into play), so a request body is limited to MAX_REQUEST_BYTES
(5 MiB) and large models go straight to S3 with a presigned PUT URL; the bucket's
ObjectCreated event then ingests them through the usual S3 handler, and
the client watches ``GET /models/{name}`` until the manifest appears.

The URL is SigV4 and signs ``Content-Length``: S3 itself refuses a body of
any other size, so the size checked here against ``MAX_INGEST_BYTES`` is
the size that lands. Presigning is a local computation (no S3 call), but
the URL only works if the API function's role may ``s3:PutObject`` on
``models/*`` and ``inputs/*``. The request body is parsed by
``validation.parse_upload``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from chalicelib import s3
from chalicelib.config import ConfigError, Settings
from chalicelib.errors import InvalidRequest
from chalicelib.names import ObjectRef

#: SigV4 presigned URLs live at most 7 days.
MAX_EXPIRES_SECONDS = 7 * 24 * 3600


def presign_upload(settings: Settings, ref: ObjectRef, size: int) -> dict[str, Any]:
    """A presigned PUT for ``ref`` of exactly ``size`` bytes: the /uploads body."""
    if not settings.bucket:
        raise InvalidRequest("No S3 bucket is configured (MODEL_BUCKET); ingest with 'data' instead")
    expires = settings.upload_url_expires_seconds
    if expires > MAX_EXPIRES_SECONDS:
        raise ConfigError(f"UPLOAD_URL_EXPIRES_SECONDS must be <= {MAX_EXPIRES_SECONDS}, got {expires}")
    url = s3.presign_put(settings, settings.bucket, ref.key, size, expires)
    return {
        "url": url,
        "method": "PUT",
        "key": ref.key,
        "headers": {"Content-Length": str(size)},
        "sizeBytes": size,
        "expiresIn": expires,
        "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires)),
        # Percent-encoded once, as GET /models/{name} decodes it: "my model.onnx" -> my%20model.onnx.
        "statusUrl": f"/{ref.kind}/{quote(ref.name, safe='')}",
    }
