"""Structured JSON logs and CloudWatch Embedded Metric Format (EMF) metrics.

Every HTTP request and every S3 event runs inside an :func:`invocation`
(the middlewares that open one live at their edges: ``http.observe_requests``
and ``events.observe_events``):

* each log line of the ``chalicelib`` loggers (``getLogger(__name__)`` in
  every module) is one JSON object carrying the invocation's ``requestId``,
  ``route`` and ``coldStart``;
* one summary line per invocation adds ``durationMs`` and the outcome
  (``status`` and ``errorCode`` for HTTP, ``outcome`` for events);
* metrics recorded during the invocation (:func:`metric`, called beside
  each domain: ingest, predict) leave as one EMF document (more, if EMF's
  100-metric limit is reached), which CloudWatch turns into metrics without
  any API call (and so without IAM permissions or latency in the request
  path).

Hand-written rather than aws-lambda-powertools: measured on this stack,
powertools 3.37.0 (3.5 MB unzipped, plus jmespath) adds ~50 ms to a cold
``import app`` of ~65 ms, for two features that fit in this module. The EMF
spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, TextIO

from chalicelib import jsontext

SERVICE = "efs-ml"
#: The package logger: every module's ``getLogger(__name__)`` propagates to it.
LOGGER_NAME = __name__.rpartition(".")[0] or "chalicelib"

# Units CloudWatch accepts that this service uses.
COUNT, BYTES, MILLISECONDS = "Count", "Bytes", "Milliseconds"
#: EMF caps one document at 100 metrics and one metric at 100 values.
MAX_METRICS, MAX_VALUES = 100, 100

log = logging.getLogger(__name__)


@dataclass
class Invocation:
    """One request or event being handled: its context and pending metrics."""

    request_id: str
    operation: str
    cold_start: bool
    started: float = field(default_factory=time.perf_counter)
    metrics: dict[str, tuple[str, list[float]]] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)

    def log_context(self) -> dict[str, Any]:
        """Fields every log line of this invocation carries."""
        return {"requestId": self.request_id, "route": self.operation, "coldStart": self.cold_start}


_current: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("efs_ml_invocation", default=None)
_cold = True
_cold_lock = threading.Lock()


def _take_cold_start() -> bool:
    """True for the first invocation of this process (a Lambda cold start), once."""
    global _cold
    with _cold_lock:
        cold, _cold = _cold, False
        return cold


def reset_cold_start() -> None:
    """Make the next invocation count as a cold start again (tests)."""
    global _cold
    with _cold_lock:
        _cold = True


def annotate(**fields: Any) -> None:
    """Add ``fields`` to the current invocation's summary log line (no-op outside one)."""
    inv = _current.get()
    if inv is not None:
        inv.outcome.update(fields)


# -- metrics -------------------------------------------------------------------
_namespace = SERVICE


def configure_metrics(namespace: str) -> None:
    """Set the CloudWatch namespace of every EMF document (``METRICS_NAMESPACE``)."""
    global _namespace
    _namespace = namespace or SERVICE


def emf_document(
    metrics: dict[str, tuple[str, list[float]]],
    dimensions: dict[str, str],
    properties: dict[str, Any] | None = None,
    namespace: str | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One EMF document: ``metrics`` maps name -> (unit, values).

    A single value is written as a number, several as an array (EMF allows
    both); dimension values and properties become top-level members.
    """
    doc: dict[str, Any] = dict(properties or {})
    doc.update(dimensions)
    for name, (_, values) in metrics.items():
        doc[name] = values[0] if len(values) == 1 else list(values)
    doc["_aws"] = {
        "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "CloudWatchMetrics": [
            {
                "Namespace": namespace or _namespace,
                # One dimension set keeps the metric count (and its cost) at
                # one series per operation.
                "Dimensions": [sorted(dimensions)],
                "Metrics": [{"Name": n, "Unit": unit} for n, (unit, _) in metrics.items()],
            }
        ],
    }
    return doc


def _sink() -> TextIO:
    # Looked up per call, so that test capture of sys.stdout works.
    return sys.stdout


def dumps(doc: dict[str, Any]) -> str:
    """One compact JSON line (anything JSON has no type for as its ``str``)."""
    return jsontext.dumps(doc, default=str).decode("utf-8")


def _write(doc: dict[str, Any]) -> None:
    stream = _sink()
    stream.write(dumps(doc) + "\n")
    stream.flush()


def metric(name: str, value: float, unit: str = COUNT) -> None:
    """Record a metric value.

    Inside an invocation it joins that invocation's EMF document; outside
    one (scripts, benchmarks) it is emitted at once on its own. A document
    that reaches EMF's limits (100 metrics, 100 values of one metric) is
    flushed and a new one started: CloudWatch would reject it whole, and
    nothing is dropped.
    """
    inv = _current.get()
    if inv is None:
        _write(emf_document({name: (unit, [value])}, {"Service": SERVICE}))
        return
    pending = inv.metrics.get(name)
    if (pending is None and len(inv.metrics) >= MAX_METRICS) or (pending is not None and len(pending[1]) >= MAX_VALUES):
        flush(inv)
        pending = None
    if pending is None:
        pending = inv.metrics[name] = (unit, [])
    pending[1].append(value)


def flush(inv: Invocation) -> None:
    """Emit ``inv``'s metrics as one EMF document (nothing if it has none)."""
    if not inv.metrics:
        return
    _write(
        emf_document(
            inv.metrics,
            {"Service": SERVICE, "Operation": inv.operation},
            {"requestId": inv.request_id, "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")},
        )
    )
    inv.metrics = {}


# -- logs ----------------------------------------------------------------------
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the current invocation's context.

    Extra fields passed as ``log.info(..., extra={...})`` are included.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        inv = _current.get()
        if inv is not None:
            doc.update(inv.log_context())
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = "".join(traceback.format_exception(*record.exc_info))
        return dumps(doc)


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """A handler bound to whatever ``sys.stdout`` is at emit time."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str = "INFO", logger: logging.Logger | None = None) -> logging.Logger:
    """Send ``logger`` (the package logger by default) to stdout as JSON lines.

    Lambda forwards stdout to CloudWatch Logs; ``propagate`` is off so the
    runtime's root handler does not print each line a second time.
    """
    target = logger or logging.getLogger(LOGGER_NAME)
    for handler in list(target.handlers):
        target.removeHandler(handler)
    handler = _StdoutHandler()
    handler.setFormatter(JsonFormatter())
    target.addHandler(handler)
    target.propagate = False
    target.setLevel(getattr(logging, level.upper(), logging.INFO))
    return target


# -- invocations ---------------------------------------------------------------
@contextmanager
def invocation(request_id: str, operation: str) -> Iterator[Invocation]:
    """Run a request or event as one observed invocation.

    On entry, the first invocation of the process writes the ``ColdStart``
    metric in a document of its own, dimensioned by function, not by
    operation: a cold start belongs to the container, and one series per
    route would cost a custom metric for every route. On exit: a summary
    log line with ``durationMs`` and ``inv.outcome``, and the invocation's
    EMF document. An escaping exception is logged as ``outcome: error`` and
    re-raised.
    """
    inv = Invocation(request_id=request_id, operation=operation, cold_start=_take_cold_start())
    if inv.cold_start:
        _write(
            emf_document(
                {"ColdStart": (COUNT, [1])},
                {"Service": SERVICE, "Function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")},
                {"requestId": request_id, "operation": operation},
            )
        )
    token = _current.set(inv)
    try:
        try:
            yield inv
        except BaseException as exc:
            inv.outcome.setdefault("outcome", "error")
            inv.outcome.setdefault("errorType", type(exc).__name__)
            raise
        finally:
            duration = round((time.perf_counter() - inv.started) * 1000, 3)
            failed = inv.outcome.get("outcome") == "error" or int(inv.outcome.get("status", 0)) >= 500
            log.log(
                logging.ERROR if failed else logging.INFO,
                "%s done",
                operation,
                extra={"durationMs": duration, **inv.outcome},
            )
            flush(inv)
    finally:
        _current.reset(token)
