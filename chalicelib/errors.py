"""The service's error types, each with its HTTP status and documented code.

Every error body has ``error``, ``message`` and ``requestId``; some carry one
documented extra field (``key``, ``maxSize``, ``stage``, ``fileId``), named
by the class's ``FIELD``. Messages never carry filesystem paths, stack
traces or credentials.

:func:`registry` lists every documented code with its status and field,
found from the classes themselves: tests and the demo's contract checks
derive from it, so a new error class is one edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.config import human_size


class ServiceError(Exception):
    """Base of every error a client may see."""

    STATUS_CODE = 500
    CODE = "PROCESSING_FAILED"
    DEFAULT_MESSAGE = "Failed to process request"
    #: The one documented extra body field this error carries, if any.
    FIELD: str | None = None

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.DEFAULT_MESSAGE
        self.details = details
        super().__init__(self.message)

    def to_body(self, request_id: str) -> dict[str, Any]:
        """The JSON body clients receive."""
        body: dict[str, Any] = {"error": self.CODE, "message": self.message}
        body.update(self.details)
        body["requestId"] = request_id
        return body


@dataclass(frozen=True)
class ErrorSpec:
    """What a client sees for one documented code."""

    code: str
    status: int
    field: str | None


def _subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def registry() -> dict[str, ErrorSpec]:
    """Every documented error code (like Chalice's ``ALL_ERRORS``), from the classes.

    Classes sharing a code (the ``PROCESSING_FAILED`` family) must agree on
    status and field; a class that does not is a bug, raised here.
    """
    specs: dict[str, ErrorSpec] = {}
    for cls in _subclasses(ServiceError):
        spec = ErrorSpec(cls.CODE, cls.STATUS_CODE, cls.FIELD)
        if specs.setdefault(cls.CODE, spec) != spec:
            raise TypeError(f"{cls.__name__} disagrees with {specs[cls.CODE]} for code {cls.CODE}")
    return specs


class InvalidRequest(ServiceError):
    """The request is malformed: bad JSON, wrong types, bad names."""

    STATUS_CODE = 400
    CODE = "INVALID_REQUEST"
    DEFAULT_MESSAGE = "Invalid request"


class S3NotFound(ServiceError):
    """The S3 key does not exist in the bucket."""

    STATUS_CODE = 404
    CODE = "S3_NOT_FOUND"
    DEFAULT_MESSAGE = "S3 object not found"
    FIELD = "key"

    def __init__(self, key: str, message: str | None = None) -> None:
        super().__init__(message, key=key)


class FileTooLarge(ServiceError):
    """The object or request body exceeds the configured maximum."""

    STATUS_CODE = 413
    CODE = "FILE_TOO_LARGE"
    DEFAULT_MESSAGE = "File size exceeds maximum allowed"
    FIELD = "maxSize"

    def __init__(self, max_bytes: int, message: str | None = None) -> None:
        """``max_bytes`` is the limit exceeded; the body shows it as ``maxSize`` (``"1GB"``)."""
        self.max_bytes = max_bytes
        super().__init__(message, maxSize=human_size(max_bytes))


class EfsWriteFailed(ServiceError):
    """Writing to the store failed; ``stage`` says where."""

    STATUS_CODE = 500
    CODE = "EFS_WRITE_FAILED"
    DEFAULT_MESSAGE = "Failed to write file to EFS"
    FIELD = "stage"

    def __init__(self, stage: str, message: str | None = None) -> None:
        self.stage = stage
        super().__init__(message, stage=stage)


class NotFound(ServiceError):
    """The model (or input) is not in the store."""

    STATUS_CODE = 404
    CODE = "NOT_FOUND"
    DEFAULT_MESSAGE = "Model file not found on EFS"
    FIELD = "fileId"

    def __init__(self, file_id: str | None, message: str | None = None) -> None:
        super().__init__(message, fileId=file_id)


class ProcessingFailed(ServiceError):
    """Inference or a dependency (S3) failed."""

    STATUS_CODE = 500
    CODE = "PROCESSING_FAILED"
    DEFAULT_MESSAGE = "Failed to process inference"


class S3Unavailable(ProcessingFailed):
    """S3 kept failing after botocore's bounded retries."""

    DEFAULT_MESSAGE = "S3 is unavailable; retry later"


class S3ObjectChanged(ProcessingFailed):
    """The S3 object changed or vanished while it was being copied."""

    DEFAULT_MESSAGE = "S3 object changed during copy; nothing was stored"


class DeadlineExceeded(ServiceError):
    """The request would outlive its function (or the gateway): stopped, in our shape.

    ``stage`` says what was waiting (``lock``, ``s3``, ``inference``, ...).
    Retrying later may succeed.
    """

    STATUS_CODE = 504
    CODE = "TIMEOUT"
    DEFAULT_MESSAGE = "The request did not finish in time; retry later"
    FIELD = "stage"

    def __init__(self, stage: str, message: str | None = None) -> None:
        self.stage = stage
        super().__init__(message, stage=stage)


class ModelRefused(InvalidRequest):
    """The model's content is unusable here: it names external data, or it
    needs more memory than the service gives one model. The model is client
    input, so this is a 400 naming the model and the limit."""


class ResourceExhausted(InvalidRequest):
    """A run needed more memory (or produced more output) than the limits allow.
    The limit's setting is named in the message."""


class InferenceTimeout(DeadlineExceeded):
    """Inference ran longer than PREDICT_TIMEOUT_SECONDS (or the request's
    deadline) and was stopped; the model stays loaded for the next request."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__("inference", message)


class StoreCorrupt(ProcessingFailed):
    """A stored object does not match its manifest."""

    DEFAULT_MESSAGE = "Stored object does not match its manifest"


class ModelInvalid(InvalidRequest):
    """A model ingest refused for its content: not what its name says (a
    ``.onnx`` that is not ONNX), a model format that cannot run here (a
    PyTorch checkpoint), or an ONNX model the shipped onnxruntime cannot load
    (external data, an opset too new). The message says what to do; nothing
    already stored under the name is replaced."""

    STATUS_CODE = 400
    CODE = "MODEL_INVALID"
    DEFAULT_MESSAGE = "The model cannot be served"


class UnsupportedMediaType(ServiceError):
    """The body is not declared as JSON in UTF-8 (``Content-Type`` missing, not
    JSON, or with another charset)."""

    STATUS_CODE = 415
    CODE = "UNSUPPORTED_MEDIA_TYPE"
    DEFAULT_MESSAGE = "Content-Type must be application/json (charset utf-8, or none)"


class EmptyObject(InvalidRequest):
    """A 0-byte object, on any path (inline, by key, S3 event, /uploads): never stored."""

    DEFAULT_MESSAGE = "An object must not be empty: a model or input needs at least one byte"


class WorkerCrashed(ProcessingFailed):
    """The inference worker process died without answering (not at a bound):
    it is replaced, and a retry runs on a fresh one."""

    DEFAULT_MESSAGE = "The inference worker stopped unexpectedly; retry"


class ModelLoading(ServiceError):
    """The model is still loading and the load would not finish within this
    request's deadline: a ``503`` with ``Retry-After`` instead of a 504 at the
    gateway's limit. The load goes on in the inference worker (bounded by
    ``MODEL_LOAD_TIMEOUT_SECONDS`` and ``MAX_MODEL_BYTES`` as ever), so a
    retry finds the model warm or further along. ``retryAfter`` (seconds)
    is also sent as the ``Retry-After`` header."""

    STATUS_CODE = 503
    CODE = "MODEL_LOADING"
    FIELD = "retryAfter"

    def __init__(self, name: str, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            f"Model '{name}' is still loading; retry in {self.retry_after} s",
            retryAfter=self.retry_after,
        )

    def headers(self) -> dict[str, str]:
        """The HTTP headers this answer carries beyond the JSON ones."""
        return {"Retry-After": str(self.retry_after)}
