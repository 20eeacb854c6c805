"""Settings, read from the environment once per process.

Every knob the service has is here, with its default. The S3 endpoint is
deliberately absent: boto3 reads ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
itself, so local runs (moto) and AWS use the same code path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Build with :func:`load_settings`."""

    efs_root: str
    """Store root: the EFS mount in Lambda, a plain folder locally."""
    bucket: str | None
    """The S3 bucket (system of record). ``None`` disables S3 features."""
    max_ingest_bytes: int = GIB
    """Largest object /ingest or the S3 handler will store."""
    max_request_bytes: int = 10 * MIB
    """Largest request body; API Gateway's own limit is 10 MB."""
    model_cache_bytes: int = 512 * MIB
    """Budget of the in-process warm model cache."""
    lock_timeout_seconds: float = 120.0
    """How long a writer waits for another writer of the same name."""
    s3_max_attempts: int = 5
    """Total attempts per S3 call (botocore standard retry mode)."""
    s3_connect_timeout: float = 5.0
    s3_read_timeout: float = 30.0
    log_level: str = "INFO"
    upload_url_expires_seconds: int = 900
    """Lifetime of presigned upload URLs (POST /uploads); SigV4 allows up to 7 days."""
    metrics_namespace: str = "efs-ml"
    """CloudWatch namespace of the Embedded Metric Format metrics."""
    max_tensor_elements: int = 1_000_000
    """Most tensor elements (all inputs together) one /predict may send a model."""
    max_output_elements: int = 1_000_000
    """Most tensor elements (all outputs together) one /predict may return."""
    max_response_bytes: int = 5 * MIB
    """Largest result document; Lambda's synchronous response limit is 6 MB."""
    inference_memory_bytes: int = 512 * MIB
    """Cap of onnxruntime's allocator for the tensors of one run (and the
    extra memory a run may take before it is stopped)."""
    predict_timeout_seconds: float = 20.0
    """Longest one inference may run before it is stopped (TIMEOUT)."""
    request_timeout_seconds: float = 27.0
    """Deadline of an HTTP request: API Gateway gives up at 29 s."""
    deadline_margin_seconds: float = 1.0
    """Kept free before Lambda's own timeout to answer with our error."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default)."""
    return Settings(
        efs_root=os.path.abspath(env.get("EFS_ROOT") or "/mnt/efs"),
        bucket=(env.get("MODEL_BUCKET") or "").strip() or None,
        max_ingest_bytes=_int(env, "MAX_INGEST_BYTES", GIB),
        max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 10 * MIB),
        model_cache_bytes=_int(env, "MODEL_CACHE_BYTES", 512 * MIB, minimum=0),
        lock_timeout_seconds=_float(env, "LOCK_TIMEOUT_SECONDS", 120.0),
        s3_max_attempts=_int(env, "S3_MAX_ATTEMPTS", 5),
        s3_connect_timeout=_float(env, "S3_CONNECT_TIMEOUT", 5.0),
        s3_read_timeout=_float(env, "S3_READ_TIMEOUT", 30.0),
        log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        upload_url_expires_seconds=_int(env, "UPLOAD_URL_EXPIRES_SECONDS", 900),
        metrics_namespace=(env.get("METRICS_NAMESPACE") or "efs-ml").strip(),
        max_tensor_elements=_int(env, "MAX_TENSOR_ELEMENTS", 1_000_000),
        max_output_elements=_int(env, "MAX_OUTPUT_ELEMENTS", 1_000_000),
        max_response_bytes=_int(env, "MAX_RESPONSE_BYTES", 5 * MIB),
        inference_memory_bytes=_int(env, "INFERENCE_MEMORY_BYTES", 512 * MIB),
        predict_timeout_seconds=_float(env, "PREDICT_TIMEOUT_SECONDS", 20.0),
        request_timeout_seconds=_float(env, "REQUEST_TIMEOUT_SECONDS", 27.0),
        deadline_margin_seconds=_float(env, "DEADLINE_MARGIN_SECONDS", 1.0),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use and then kept.

    Tests that change the environment call ``get_settings.cache_clear()``.
    """
    return load_settings()


def human_size(n: int) -> str:
    """``1073741824`` -> ``'1GB'``: the seed's ``maxSize`` style."""
    for unit, size in (("GB", GIB), ("MB", MIB), ("KB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"
