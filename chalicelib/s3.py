"""S3 access: clients with bounded retries, built lazily from the settings
each call is handed, and a streaming GET that reads large objects in
parallel ranged parts.

boto3 is imported on first use, so handlers that never touch S3 (and cold
starts) do not pay for it. The endpoint comes from boto3's own
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from chalicelib import deadline
from chalicelib.config import Settings
from chalicelib.errors import DeadlineExceeded, S3NotFound, S3ObjectChanged, S3Unavailable

# The IAM actions behind every S3 client method this module calls: the one
# list the deployment is checked against (tests/infra/test_s3_permissions.py
# scans the code for client calls and fails on one missing here, then checks
# each function's role and the VPC's S3 gateway endpoint policy allow what the
# function can reach). HEAD is authorised as GetObject; without ListBucket S3
# answers a missing key with 403, not 404. A copy reads the source and writes
# the target. A presigned URL is sent by the client from outside the VPC:
# the signing role needs the action, the endpoint never sees the request.
IAM_ACTIONS: dict[str, tuple[str, ...]] = {
    "head_object": ("s3:GetObject", "s3:ListBucket"),
    "get_object": ("s3:GetObject", "s3:ListBucket"),
    "put_object": ("s3:PutObject",),
    "copy_object": ("s3:GetObject", "s3:PutObject"),
    "delete_object": ("s3:DeleteObject",),
    # Presigned PUTs (uploads) and GETs (results): the signer's role needs both.
    "generate_presigned_url": ("s3:PutObject", "s3:GetObject"),
    # A multipart upload (job results); a failed one is aborted.
    "upload_file": ("s3:PutObject", "s3:AbortMultipartUpload"),
}
SIGNED_FOR_CLIENTS = frozenset({"generate_presigned_url"})

CHUNK_BYTES = 1024 * 1024
PART_THREAD_PREFIX = "s3-part"

_client_lock = threading.Lock()
# The process's clients, keyed by (attempts, connect, read, pool): the
# configured one, and ones with shorter timeouts or fewer attempts for calls
# near a deadline (their timeouts come from a short ladder, so there are few).
# chalicelib.edge.reset() forgets them.
_clients: dict[tuple[int, float, float, int], Any] = {}
_LADDER = (16.0, 8.0, 4.0, 2.0, 1.0, 0.5, 0.25)
_MIN_READ = 2.0  # a shorter read timeout would fail healthy calls; prefer fewer attempts
_MAX_BACKOFF = 20.0  # botocore standard mode's cap between attempts


def _make_client(attempts: int, connect: float, read: float, pool: int = 10) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        config=Config(
            # SigV4 for presigned URLs too: it signs Content-Length.
            signature_version="s3v4",
            # total_max_attempts counts the first try; botocore's
            # max_attempts would count retries only (one call too many).
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=connect,
            read_timeout=read,
            max_pool_connections=pool,  # at least one per ranged part in flight
        ),
    )


def _cached_client(attempts: int, connect: float, read: float, pool: int = 10) -> Any:
    key = (attempts, connect, read, pool)
    with _client_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _make_client(*key)
    return found


def client(settings: Settings) -> Any:
    """The S3 client ``settings`` configure (thread-safe), created on first use."""
    attempts, connect, read = settings.s3_max_attempts, settings.s3_connect_timeout, settings.s3_read_timeout
    return _cached_client(attempts, connect, read, pool=max(10, settings.s3_connections))


def worst_case_seconds(attempts: int, connect: float, read: float) -> float:
    """Longest a call may take: every attempt timing out, plus the backoffs between."""
    backoff = sum(min(2.0**i, _MAX_BACKOFF) for i in range(1, attempts))
    return attempts * (connect + read) + backoff


def plan(settings: Settings, seconds: float) -> tuple[int, float, float]:
    """``(attempts, connect, read)`` whose worst case fits in ``seconds``:
    the configured ones if they fit; else as many attempts as fit with a read
    timeout shortened down to ``_MIN_READ``; else one attempt with whatever
    timeouts fit."""
    connect, read = settings.s3_connect_timeout, settings.s3_read_timeout
    reads = [read] + [r for r in _LADDER if r < read]
    for attempts in range(settings.s3_max_attempts, 0, -1):
        for r in reads:
            if r < min(read, _MIN_READ):
                break
            if worst_case_seconds(attempts, connect, r) <= seconds:
                return attempts, connect, r
    connect = next((c for c in (connect, *_LADDER) if c <= connect and c <= seconds / 2), _LADDER[-1])
    read = next((r for r in reads if connect + r <= seconds), _LADDER[-1])
    return 1, connect, read


def bounded_client(settings: Settings) -> tuple[Any, bool]:
    """A client (configured by ``settings``) whose retries and timeouts end
    before the current deadline, and whether the deadline cut its attempts
    short. Raises :class:`DeadlineExceeded` when no time is left at all."""
    if not deadline.has_deadline():
        return client(settings), False
    seconds = deadline.remaining(float("inf"))
    if seconds <= 0:
        raise DeadlineExceeded("s3")
    attempts, connect, read = plan(settings, seconds)
    configured = (settings.s3_max_attempts, settings.s3_connect_timeout, settings.s3_read_timeout)
    if (attempts, connect, read) == configured:
        return client(settings), False
    return _cached_client(attempts, connect, read), True


def _failed(exc: Exception, key: str, cut_short: bool) -> Exception:
    """The error for a failed call: TIMEOUT when the deadline is why it gave up."""
    from botocore.exceptions import ClientError

    if cut_short and not (isinstance(exc, ClientError) and _error_code(exc) in _PERMANENT):
        return DeadlineExceeded("s3")
    return _translate(exc, key)


def reset_clients() -> None:
    """Forget the clients (boto3 read its endpoint when it built them): part
    of :func:`chalicelib.edge.reset`."""
    with _client_lock:
        _clients.clear()


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about an object."""

    size: int
    etag: str


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


_PERMANENT = ("404", "NoSuchKey", "NotFound", "412", "PreconditionFailed", "403", "AccessDenied", "NoSuchBucket")


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


def head(settings: Settings, bucket: str, key: str) -> ObjectInfo:
    """Size and ETag of ``key``; :class:`S3NotFound` when absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3, cut_short = bounded_client(settings)
    try:
        r = s3.head_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, cut_short) from None
    return ObjectInfo(size=int(r["ContentLength"]), etag=r["ETag"])


# S3's guidance: parallel byte ranges of 8-16 MB. An object is spread over
# every connection in parts of at least this much (and at most S3_PART_BYTES).
MIN_PART_BYTES = 8 * 1024 * 1024


def part_size(size: int, max_part: int, connections: int) -> int:
    """Bytes per ranged GET for an object of ``size`` bytes.

    The object spread evenly over ``connections`` (rounded up to whole
    chunks), kept within ``MIN_PART_BYTES``..``max_part``: an object of at
    least ``connections`` x 8 MiB (48 MiB by default) uses every connection
    (64 MiB: six parts of 11 MiB, where fixed 16 MiB parts used four), a
    smaller one as many 8 MiB parts as it fills, and a large one 16 MiB parts.
    The buffers stay bounded: ``connections + 1`` of at most ``max_part``.
    An object no larger than the result is one plain GET.
    """
    floor = min(MIN_PART_BYTES, max_part)
    spread = -(-size // max(1, connections))
    spread = -(-spread // CHUNK_BYTES) * CHUNK_BYTES
    return max(floor, min(max_part, spread))


def stream(
    settings: Settings,
    bucket: str,
    key: str,
    info: ObjectInfo,
    chunk_bytes: int = CHUNK_BYTES,
    *,
    part_bytes: int | None = None,
    connections: int | None = None,
    attempts: int | None = None,
) -> Generator[bytes | memoryview, None, None]:
    """Yield the bytes of exactly the version ``info`` describes, in order.

    Chunks are ``bytes`` or read-only ``memoryview`` (ranged parts are read
    into reused buffers; a buffer is reused only once no chunk of it is
    held, so keeping chunks is safe, just costlier in memory).

    An object larger than one part (:func:`part_size`: 8 MiB up to
    ``S3_PART_BYTES``) is read with up to ``S3_CONNECTIONS`` parallel ranged
    GETs, because S3 serves about 85-90 MB/s per connection; a smaller one
    with a single GET. Either way
    every request carries ``IfMatch`` with the HEAD's ETag (a replaced object
    is refused with :class:`S3ObjectChanged`, never mixed), and a stream that
    ends early raises rather than yielding a short file. The caller hashes
    what is yielded, in order, in the same pass. ``part_bytes``,
    ``connections`` and ``attempts`` (per part) default to ``settings``'.
    """
    part_bytes = part_bytes or settings.s3_part_bytes
    connections = connections or settings.s3_connections
    attempts = attempts or settings.s3_max_attempts
    part = part_size(info.size, part_bytes, connections)
    if info.size <= part or connections <= 1:
        return _single(settings, bucket, key, info, chunk_bytes)
    return _ranged(settings, bucket, key, info, part, connections, max(1, attempts))


def _single(
    settings: Settings, bucket: str, key: str, info: ObjectInfo, chunk_bytes: int
) -> Generator[bytes, None, None]:
    """One GET for the whole object."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3, cut_short = bounded_client(settings)
    try:
        r = s3.get_object(Bucket=bucket, Key=key, IfMatch=info.etag)
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, cut_short) from None
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
        raise S3ObjectChanged(f"S3 sent {received} of {info.size} bytes; nothing was stored")


class _Cancelled(Exception):
    """A part download stopped because the stream was abandoned."""


class _PartBuffer:
    """A reusable part-sized buffer that knows when no yielded chunk refers to it.

    Chunks are handed out as ``memoryview(part_buffer)[a:b]``: each such view
    takes a lease through the buffer protocol (PEP 688) and returns it when
    the last view sharing it is gone. So the buffer is overwritten only once
    every consumer has dropped every chunk of it: a consumer that keeps
    chunks (a join, a queue) costs memory, never correctness.
    """

    __slots__ = ("data", "leases")

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.leases = 0

    def __buffer__(self, flags: int) -> memoryview:
        self.leases += 1
        return memoryview(self.data)

    def __release_buffer__(self, view: memoryview) -> None:
        view.release()
        # The garbage collector may clear this object's slots before the last
        # view of it dies (a generator in a reference cycle): nothing to count then.
        if hasattr(self, "leases"):
            self.leases -= 1


class _BufferPool:
    """Part buffers for one stream, used only by the stream's own thread.

    A buffer comes back once its part has been yielded in full, and is
    reused when no chunk of it is held any more; otherwise a new one is made.
    With a consumer that drops each chunk before asking for the next, a
    stream of ``conns`` parallel parts needs ``conns + 1`` buffers (the part
    being yielded and those downloading), allocated once and filled by
    ``readinto``: no per-chunk allocation, page faults or copies in Python.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._returned: list[_PartBuffer] = []

    def take(self) -> _PartBuffer:
        for i, buf in enumerate(self._returned):
            if not buf.leases:
                return self._returned.pop(i)
        return _PartBuffer(self._size)

    def give_back(self, buf: _PartBuffer) -> None:
        self._returned.append(buf)


def _fill(body: Any, view: memoryview, cancel: threading.Event) -> int:
    """Read ``body`` into ``view`` until it is full, the body ends or ``cancel``
    is set; the number of bytes read.

    Reads straight into the buffer below botocore: its StreamingBody (and
    urllib3's ``read``) return a new ``bytes`` per call, which the caller
    would copy again. The body is botocore's ``decode_content=False`` urllib3
    response, so ``http.client``'s ``readinto`` sees the same bytes (framing
    and Content-Length handled by ``http.client``). Falls back to
    ``body.read`` where that structure is not there.
    """
    raw: Any = getattr(body, "_raw_stream", None)
    fp: Any = getattr(raw, "_fp", None)
    readinto = getattr(fp, "readinto", None)
    got, want = 0, len(view)
    if readinto is None or getattr(raw, "decode_content", True):
        while got < want and not cancel.is_set():
            chunk = body.read(min(CHUNK_BYTES, want - got))
            if not chunk:
                break
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return got
    while got < want and not cancel.is_set():
        # 1 MiB per call: a cancelled stream stops within ~12 ms at 90 MB/s.
        n = readinto(view[got : got + CHUNK_BYTES])
        if not n:
            break
        got += n
    if got == want and fp.isclosed():
        raw.release_conn()  # the whole body was read: the connection can be reused
    return got


def _read_part(
    settings: Settings,
    bucket: str,
    key: str,
    info: ObjectInfo,
    first: int,
    last: int,
    attempts: int,
    cancel: threading.Event,
    into: bytearray,
) -> None:
    """One ranged GET ``bytes=first-last``, read whole into ``into``.

    The GET itself is retried by botocore (bounded by ``S3_MAX_ATTEMPTS``);
    a body that breaks off is fetched again, within the same bound. A 412
    (the object changed) or 404 is final.
    """
    from http.client import HTTPException

    from botocore.exceptions import BotoCoreError, ClientError

    want = last - first + 1
    for _attempt in range(1, attempts + 1):
        if cancel.is_set():
            raise _Cancelled()
        # Retries and timeouts planned to end before the deadline (this thread runs in a copy of its context).
        s3, cut_short = bounded_client(settings)
        try:
            r = s3.get_object(Bucket=bucket, Key=key, IfMatch=info.etag, Range=f"bytes={first}-{last}")
        except (BotoCoreError, ClientError) as exc:
            raise _failed(exc, key, cut_short) from None
        body = r["Body"]
        got = 0
        try:
            with memoryview(into) as view:
                got = _fill(body, view[:want], cancel)
        except (BotoCoreError, ClientError, OSError, ValueError, HTTPException):
            pass  # broken off: counted below, fetched again
        finally:
            body.close()
        if cancel.is_set():
            raise _Cancelled()
        if got == want:
            return
    raise S3ObjectChanged(f"S3 transfer of bytes {first}-{last} was interrupted {attempts} times; nothing was stored")


def _ranged(
    settings: Settings, bucket: str, key: str, info: ObjectInfo, part: int, conns: int, attempts: int
) -> Generator[memoryview, None, None]:
    """Parts downloaded by ``conns`` threads, yielded in order as 1 MiB views.

    Each part is read into a pooled buffer (:class:`_BufferPool`), and
    yielded as read-only ``memoryview`` chunks of it; a buffer is reused only
    once no chunk of it is held. With a consumer that drops each chunk before
    the next, memory stays at ``conns + 1`` parts. Each thread runs in a copy
    of the caller's context, so it sees the invocation deadline. When the
    consumer stops (an error here, in the store, or the generator being
    closed), pending parts are cancelled, running ones stop at their next
    read, and every thread has ended before this generator returns.
    """
    import contextvars
    from concurrent.futures import Future, ThreadPoolExecutor

    ranges = [(first, min(first + part, info.size) - 1) for first in range(0, info.size, part)]
    cancel = threading.Event()
    executor = ThreadPoolExecutor(max_workers=min(conns, len(ranges)), thread_name_prefix=PART_THREAD_PREFIX)
    pool = _BufferPool(part)
    pending: dict[int, tuple[_PartBuffer, Future[None]]] = {}

    def submit(index: int) -> None:
        if index < len(ranges):
            first, last = ranges[index]
            buf = pool.take()
            context = contextvars.copy_context()  # one per task: a context is entered by one thread at a time
            pending[index] = (
                buf,
                executor.submit(
                    context.run, _read_part, settings, bucket, key, info, first, last, attempts, cancel, buf.data
                ),
            )

    try:
        for index in range(min(conns, len(ranges))):
            submit(index)
        for index in range(len(ranges)):
            buf, future = pending.pop(index)
            future.result()
            deadline.check("s3")
            first, last = ranges[index]
            size = last - first + 1
            view = memoryview(buf).toreadonly()
            for offset in range(0, size, CHUNK_BYTES):
                yield view[offset : min(offset + CHUNK_BYTES, size)]
                if offset == 0:
                    # The next part starts while this one is consumed. Not before
                    # this first chunk was taken: until then the consumer still
                    # holds the previous part's last chunk, whose buffer it reuses.
                    submit(index + conns)
            del view
            pool.give_back(buf)
    finally:
        cancel.set()
        executor.shutdown(wait=True, cancel_futures=True)


def put_bytes(settings: Settings, bucket: str, key: str, data: bytes, content_type: str = "application/json") -> None:
    """Upload a small object (prediction results), within the current deadline."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3, cut_short = bounded_client(settings)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, cut_short) from None


def renotify_created(settings: Settings, bucket: str, key: str, info: ObjectInfo, metadata: dict[str, str]) -> None:
    """Copy ``key`` onto itself (server-side), adding ``metadata`` to its own:
    S3 sends the bucket's ObjectCreated notification for it. Only the version
    ``info`` describes is copied (``CopySourceIfMatch``); its content type
    and user metadata are kept. Objects up to 5 GiB (one CopyObject)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3, cut_short = bounded_client(settings)
    try:
        head = s3.head_object(Bucket=bucket, Key=key, IfMatch=info.etag)
        extra = {"ContentType": head["ContentType"]} if head.get("ContentType") else {}
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceIfMatch=info.etag,
            MetadataDirective="REPLACE",
            Metadata={**head.get("Metadata", {}), **metadata},
            **extra,
        )
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, cut_short) from None


def presign_put(settings: Settings, bucket: str, key: str, size: int, expires: int) -> str:
    """A SigV4 presigned PUT URL for exactly ``size`` bytes (no S3 call)."""
    url: str = client(settings).generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key, "ContentLength": size},
        ExpiresIn=expires,
        HttpMethod="PUT",
    )
    return url


def delete(settings: Settings, bucket: str, key: str) -> None:
    """Delete ``key`` (idempotent: a missing key is not an error), within the
    current deadline. On a versioned bucket this adds a delete marker."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3, cut_short = bounded_client(settings)
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, cut_short) from None


def presign_get(settings: Settings, bucket: str, key: str, expires: int) -> str:
    """A SigV4 presigned GET URL of ``key`` (no S3 call): results anyone with the API can read."""
    url: str = client(settings).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires, HttpMethod="GET"
    )
    return url


#: Below this, one PutObject of the open file (boto3's own multipart threshold).
SINGLE_PUT_MAX_BYTES = 8 * 1024 * 1024


def upload_file(settings: Settings, bucket: str, path: str, key: str) -> None:
    """Archive a file: one streamed PutObject up to SINGLE_PUT_MAX_BYTES, a
    multipart upload of bounded memory above. (A job's outputs are often
    small; the transfer manager's threads cost ~10 ms more than one PutObject
    for 2 MiB, measured against the local moto, in the job's serial tail.)"""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if os.path.getsize(path) <= SINGLE_PUT_MAX_BYTES:
            with open(path, "rb") as body:
                client(settings).put_object(Bucket=bucket, Key=key, Body=body)
            return
        client(settings).upload_file(path, bucket, key, Config=TransferConfig(max_concurrency=4))
    except (BotoCoreError, ClientError) as exc:
        raise _failed(exc, key, False) from None
    except Exception as exc:  # noqa: BLE001 - s3transfer wraps botocore errors in its own
        raise S3Unavailable(f"S3 upload of '{key}' failed ({type(exc).__name__})") from None
