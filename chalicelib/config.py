"""Settings and how they are read from the environment (once per process,
by :func:`chalicelib.edge.get_settings`).

Every knob the service has is here, with its default. The S3 endpoint is
deliberately absent: boto3 reads ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
itself, so local runs (moto) and AWS use the same code path.
"""

from __future__ import annotations

import os
from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable, Mapping, cast, get_type_hints

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


# What one synchronous POST /ingest {"key"} can copy before API Gateway's
# 29 s: ~25 s usable (29 s less HEAD, lock, fsync and rename of the file, the
# response, and a cold start's imports) x the modelled throughput, which is
# the least of S3 (S3_CONNECTIONS 6 x 85 MB/s = 510 MB/s), EFS (elastic:
# 1,500 MiB/s per client; bursting: 100 MiB/s, the floor a deployment can
# choose) and the CPU of a 2048 MB Lambda (~1.16 vCPU; sha256 + copy measured
# by `make bench` well above 100 MiB/s). 25 s x 100 MiB/s = 2.4 GiB, halved
# for variance (part retries with backoff, EFS latency, noisy neighbours):
# 1 GiB, the same as MAX_INGEST_BYTES, so by default every key is copied
# while the client waits; a deployment that raises MAX_INGEST_BYTES gets the
# hand-off above this (chalicelib.ingest.hand_off).
SYNC_INGEST_MAX_BYTES = GIB


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _setting(
    default: Any,
    env: str | None = None,
    minimum: float | None = None,
    normalize: Callable[[str], str] | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A Settings field: its default, and how :func:`load_settings` reads it.

    ``env`` names the variable (default: the field name in capitals),
    ``minimum`` bounds numbers (default: >= 1 for ints, > 0 for floats),
    ``normalize`` post-processes strings, ``choices`` lists the values a
    string may then take.
    """
    return field(default=default, metadata={"env": env, "minimum": minimum, "normalize": normalize, "choices": choices})


DIR_FSYNC_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Build with :func:`load_settings`.

    Each default is written here once; the loader reads every field from
    the environment variable :func:`env_name` gives it.
    """

    efs_root: str = _setting("/mnt/efs", normalize=os.path.abspath)
    """Store root: the EFS mount in Lambda, a plain folder locally."""
    bucket: str | None = _setting(None, env="MODEL_BUCKET")
    """The S3 bucket (system of record). ``None`` disables S3 features."""
    max_ingest_bytes: int = _setting(GIB)
    """Largest object /ingest or the S3 handler will store."""
    max_request_bytes: int = _setting(5 * MIB)
    """Largest request body. Lambda refuses a synchronous event over 6 MB
    (request and response alike), and the body travels inside the API
    Gateway event with its headers (twice: ``headers`` and
    ``multiValueHeaders``, up to 10 KB each), the request context and JSON
    escaping. 5 MiB (5,242,880 bytes) leaves ~750 KB of 6,000,000 for that
    envelope; larger files go through ``POST /uploads``."""
    sync_ingest_max_bytes: int = _setting(SYNC_INGEST_MAX_BYTES, minimum=0)
    """Largest S3 object ``POST /ingest {"key"}`` copies while the client
    waits; see :data:`SYNC_INGEST_MAX_BYTES`."""
    model_cache_bytes: int = _setting(512 * MIB, minimum=0)
    """Budget of the in-process warm model cache (and of the inference
    worker's sessions: the worker is sized by it)."""
    max_model_bytes: int = _setting(None)
    """Most memory one model may hold once loaded (its file, its tensors, its
    measured footprint): a larger one is refused (400). Unset: the same as
    ``MODEL_CACHE_BYTES``, which it may not exceed (one model must fit the
    cache and the worker sized by it)."""
    model_versions_kept: int = _setting(3)
    """Versions of each model the store keeps, the current one included
    (older ones stay in the bucket's object versions); docs/versions.md."""
    store_dir_fsync: str = _setting("auto", normalize=str.lower, choices=DIR_FSYNC_MODES)
    """Where the store fsyncs directories: ``auto`` skips them on an NFS
    mount (EFS), where a directory fsync is a no-op of the client and every
    rename is already durable when it returns, and keeps them elsewhere;
    ``always``/``never`` force it (tests, benchmarks)."""
    lock_timeout_seconds: float = _setting(120.0)
    """How long a writer waits for another writer of the same name."""
    debris_min_age_seconds: float = _setting(1800.0)
    """Age at which the hourly sweep removes a dead writer's temp and intent
    files: past Lambda's 15-minute limit (and an NFS lease), so no live
    writer can own them whatever its lock did."""
    s3_max_attempts: int = _setting(5)
    """Total attempts per S3 call (botocore standard retry mode)."""
    s3_connect_timeout: float = _setting(5.0)
    s3_read_timeout: float = _setting(30.0)
    s3_part_bytes: int = _setting(16 * MIB, minimum=64 * KIB)
    """Largest ranged GET when an object is read in parallel parts (an object
    is spread over every connection in parts of 8 MiB up to this:
    ``chalicelib.s3.part_size``). 16 MiB:
    each request costs ~3 ms of CPU (botocore), 64 of them per GiB (measured:
    8 MiB parts +0.3 CPU-s/GiB; 24 MiB x 5 or 32 MiB x 4 save <0.1 but take
    peak RSS to 195-211 MiB)."""
    s3_connections: int = _setting(6)
    """Ranged GETs in flight per object: S3 gives ~85-90 MB/s per connection,
    so 6 give ~5x one stream, in 7 reused part buffers (112 MiB); more
    threads cost more CPU per byte (measured: 8 x 8 MiB took ~25% more than
    6 x 16 MiB)."""
    log_level: str = _setting("INFO", normalize=str.upper)
    upload_url_expires_seconds: int = _setting(900)
    """Lifetime of presigned upload URLs (POST /uploads); SigV4 allows up to 7 days."""
    metrics_namespace: str = _setting("efs-ml")
    """CloudWatch namespace of the Embedded Metric Format metrics."""
    max_tensor_elements: int = _setting(1_000_000)
    """Most tensor elements (all inputs together) one /predict may send a model."""
    max_output_elements: int = _setting(1_000_000)
    """Most tensor elements (all outputs together) one /predict may return."""
    max_response_bytes: int = _setting(5 * MIB)
    """Largest result document; Lambda's synchronous response limit is 6 MB."""
    max_binary_body_bytes: int = _setting(4 * MIB)
    """Largest binary body (``/v2`` infer with binary tensors), request or
    response. API Gateway carries a binary body to and from Lambda
    base64-encoded (4/3 of its size): 4 MiB becomes 5.6 MB, within Lambda's
    6 MB with room for the event's envelope."""
    inference_memory_bytes: int = _setting(512 * MIB)
    """Cap of onnxruntime's allocator for the tensors of one run (and the
    extra memory a run may take before it is stopped)."""
    predict_timeout_seconds: float = _setting(20.0)
    """Longest one inference may run before it is stopped (TIMEOUT)."""
    request_timeout_seconds: float = _setting(27.0)
    """Deadline of an HTTP request: API Gateway gives up at 29 s."""
    deadline_margin_seconds: float = _setting(1.0)
    """Kept free before Lambda's own timeout to answer with our error."""
    job_queue_url: str | None = _setting(None)
    """The SQS queue batch jobs send one message per block to (``None``:
    ``POST /jobs`` answers that jobs are not configured)."""
    job_batch_size: int = _setting(64)
    """Rows per block when ``POST /jobs`` gives no ``batchSize`` (lowered to
    what MAX_TENSOR_ELEMENTS allows for the input's row size)."""
    job_max_blocks: int = _setting(10_000)
    """Most blocks one job may have: its messages are sent within the request
    (10 per SQS call, in parallel), well inside API Gateway's 29 s."""
    job_max_receive_count: int = _setting(3)
    """Attempts of one block before SQS moves its message to the dead-letter
    queue; the same number as the queue's redrive policy (infra), so the
    worker knows an attempt is the last and records the block as failed."""
    job_attempt_timeout_seconds: float = _setting(960.0)
    """How long after a block's last attempt (or an assembly's last attempt)
    started ``GET /jobs/{id}`` waits for its result or failure before it
    counts the block (or the assembly) as failed: its worker was stopped
    (Lambda's timeout, out of memory, killed) and SQS will not run it again.
    At least run_job_blocks' ``lambda_timeout`` (900 s in .chalice/config.json),
    plus a margin for the clocks of two functions; lower it with the timeout."""
    result_retention_days: int = _setting(30, minimum=0)
    """Days results (``outputs/``) and finished jobs are kept, in S3 (a
    lifecycle rule) and on the store (the hourly sweep); 0 keeps them forever."""
    result_url_expires_seconds: int = _setting(3600)
    """Lifetime of presigned GET URLs of results (jobs, /predict by reference)."""
    model_load_timeout_seconds: float = _setting(20.0)
    """Longest one model load (onnxruntime's session creation, in the
    inference worker) may take before the worker is killed (TIMEOUT, stage
    ``load``); the request's deadline bounds it too."""
    max_model_nodes: int = _setting(100_000)
    """Most graph nodes a model may have, counted with its model-local
    functions inlined as onnxruntime inlines them (a function called twice
    counts twice), subgraphs included; checked before load."""
    max_model_nesting: int = _setting(16)
    """Deepest nesting a model may have: subgraph levels (``If``, ``Loop``,
    ``Scan`` bodies) plus function-call levels; checked before load."""
    preload_models: str = _setting("")
    """Models to load at init (the app's import), comma-separated names, or
    ``*`` for every stored model that fits ``MODEL_CACHE_BYTES`` (by name);
    empty: none. See docs/cold-loads.md."""
    preload_init_seconds: float = _setting(8.0)
    """Longest the app's import waits for ``PRELOAD_MODELS`` (Lambda's init
    phase has 10 s); what is not loaded by then goes on in the background
    and is joined by the first request that needs it."""

    def __post_init__(self) -> None:
        # A default that follows another setting: the field holds None until here.
        cap = cast("int | None", self.max_model_bytes)
        if cap is None:
            object.__setattr__(self, "max_model_bytes", self.model_cache_bytes)
        elif cap > self.model_cache_bytes:
            raise ConfigError(
                f"MAX_MODEL_BYTES ({cap}) must not exceed MODEL_CACHE_BYTES "
                f"({self.model_cache_bytes}): one model must fit the warm cache"
            )


def env_name(f: Field[Any]) -> str:
    """The environment variable a Settings field is read from."""
    return str(f.metadata.get("env") or f.name.upper())


def _parse(f: Field[Any], kind: Any, raw: str) -> Any:
    name, minimum, normalize = env_name(f), f.metadata.get("minimum"), f.metadata.get("normalize")
    if kind is int or kind is float:
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        if minimum is None and (value < 1 if kind is int else value <= 0):
            raise ConfigError(f"{name} must be {'>= 1' if kind is int else '> 0'}, got {value}")
        return value
    if kind is bool:
        if raw.lower() not in _BOOLEANS:
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return _BOOLEANS[raw.lower()]
    if kind is not str:
        raise TypeError(f"Settings.{f.name}: no loader for type {kind!r}")
    text = normalize(raw) if normalize else raw
    choices = f.metadata.get("choices")
    if choices and text not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return text


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Build settings from an environment mapping (``os.environ`` by default).

    An unset or blank variable keeps the field's default.
    """
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(env_name(f), "").strip()
        if raw:
            kind = hints[f.name]
            # ``str | None`` fields hold a str when set.
            values[f.name] = _parse(f, str if kind == (str | None) else kind, raw)
    return Settings(**values)


def human_size(n: int) -> str:
    """``1073741824`` -> ``'1GB'``: the seed's ``maxSize`` style."""
    for unit, size in (("GB", GIB), ("MB", MIB), ("KB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"
