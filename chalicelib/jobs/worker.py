"""The SQS edge of jobs: run one block per message, idempotently.

For each record of an SQS batch:

* a block whose result file exists is not run again (a redelivered or
  duplicated message changes nothing: the result was written by one atomic
  rename, and a repeat only re-checks whether the job can be assembled);
* a cancelled job's blocks that have not started are skipped;
* otherwise the block's rows are mapped in place from the shared ``.npy``
  (``numpy.memmap`` of just ``[start, stop)``: no copy of the input per
  block), run through :func:`chalicelib.jobs.inference.infer_rows`, and
  its outputs written atomically as ``blocks/<i>.npz``; the worker that
  sees the last block done assembles the job's outputs.

A failed block is reported back in ``batchItemFailures`` (Lambda's
ReportBatchItemFailures), so only its message returns to the queue; each
failure is recorded in ``errors/<i>.json``, and on the attempt SQS counts as
the last (``ApproximateReceiveCount`` >= JOB_MAX_RECEIVE_COUNT, the queue's
redrive ``maxReceiveCount``) in ``failed/<i>.json``, before SQS moves the
message to the dead-letter queue.

A worker stopped outright (Lambda's timeout, out of memory, SIGKILL) records
nothing when it dies, so the last attempt records its start first
(``last-attempt/<i>.json``) and an assembly records each of its attempts
(``assembling/<i>.json``): ``GET /jobs/{id}`` counts such an attempt that has
produced nothing after JOB_ATTEMPT_TIMEOUT_SECONDS as failed (see
:mod:`chalicelib.jobs.service`). An assembly that raises on its message's
last attempt records ``assembly-failed/<i>.json``.
"""

from __future__ import annotations

import io
import json
import logging
import time
from functools import lru_cache
from typing import Any

from chalicelib import observability, s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, ServiceError
from chalicelib.jobs import assemble as assembly
from chalicelib.jobs.inference import infer_rows
from chalicelib.jobs.state import JobFiles, is_job_id, iso
from chalicelib.model_cache import ModelCache
from chalicelib.names import parse_key
from chalicelib.scrub import scrub
from chalicelib.store import Store

log = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _plan(root: str, job_id: str) -> dict[str, Any]:
    """A job's plan, read once per process: it never changes after creation."""
    return JobFiles(root).plan(job_id)


def _rows(store: Store, plan: dict[str, Any], block: dict[str, Any]) -> Any:
    """Block ``block``'s rows, mapped read-only from the stored input."""
    import numpy as np

    spec = plan["inputs"][block["input"]]
    ref = parse_key(spec["key"], "input")
    try:
        with store.open(ref) as (manifest, f):
            if manifest.sha256 != spec["sha256"]:
                raise InvalidRequest(f"Input '{ref.name}' was replaced after the job was created")
            dtype = np.dtype(spec["dtype"])
            rest = tuple(spec["shape"][1:])
            row_bytes = dtype.itemsize * int(np.prod(rest, dtype=np.int64))
            count = block["stop"] - block["start"]
            # The mapping outlives the file object (mmap keeps its own reference).
            return np.memmap(
                f, dtype=dtype, mode="r", offset=spec["offset"] + block["start"] * row_bytes, shape=(count, *rest)
            )
    except FileNotFoundError:
        raise InvalidRequest(f"Input '{ref.name}' was deleted after the job was created") from None


def _attempt_doc(attempt: int, last: bool) -> dict[str, Any]:
    now = time.time()
    return {"attempt": attempt, "last": last, "at": iso(now), "t": now}


def run_block(store: Store, settings: Settings, models: ModelCache, job_id: str, index: int, attempt: int = 1) -> str:
    """Run block ``index`` of ``job_id`` unless it is done or the job is
    cancelled; returns ``ran``, ``repeat`` or ``skipped``.

    ``attempt`` is SQS's ApproximateReceiveCount: from JOB_MAX_RECEIVE_COUNT
    on, the attempt is the last and its start is recorded before it runs.

    A job that is not on the store is an error, not a no-op: a worker
    mounted on the wrong store must not swallow every message (they end in
    the DLQ and its alarm instead)."""
    import numpy as np

    files = JobFiles(store.root)
    plan = _plan(store.root, job_id)
    if not 0 <= index < len(plan["blocks"]):
        raise InvalidRequest(f"Job '{job_id}' has no block {index}")
    last = attempt >= settings.job_max_receive_count
    if files.exists(job_id, "blocks", f"{index}.npz"):
        finish_if_done(store, settings, files, job_id, plan, index, attempt)
        return "repeat"
    if files.exists(job_id, "cancelled"):
        return "skipped"
    files.create_once(job_id, "started", {"at": iso(time.time())})
    if last:
        # Written before the run: a worker killed in it leaves this behind, and the job's status counts it.
        files.write_json(job_id, ("last-attempt", f"{index}.json"), _attempt_doc(attempt, True))
    block = plan["blocks"][index]
    log.info("job %s block %d: started (attempt %d)", job_id, index, attempt)
    model = plan["model"]
    rows = _rows(store, plan, block)
    outputs = tuple(plan["outputs"]) if plan.get("outputs") else None
    inferred = infer_rows(
        store, settings, models, parse_key(model["key"], "model"), model.get("version"), rows, outputs
    )
    if inferred.model_sha256 != model["sha256"]:
        raise InvalidRequest(f"Model '{model['key']}' was replaced after the job was created")
    count = block["stop"] - block["start"]
    for name, array in inferred.outputs.items():
        if getattr(array, "ndim", 0) < 1 or array.shape[0] != count:
            raise InvalidRequest(
                f"Output '{name}' has shape {list(getattr(array, 'shape', []))} for {count} rows: "
                "jobs need outputs with one row per input row (batch axis first)"
            )
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **{name: np.asarray(a) for name, a in inferred.outputs.items()})
    files.write(job_id, ("blocks", f"{index}.npz"), buf.getvalue())
    observability.metric("JobRowsDone", count)
    finish_if_done(store, settings, files, job_id, plan, index, attempt)
    return "ran"


def finish_if_done(
    store: Store,
    settings: Settings,
    files: JobFiles,
    job_id: str,
    plan: dict[str, Any],
    index: int,
    attempt: int = 1,
) -> bool:
    """Assemble the job if every block is done and it is not assembled yet.

    The assembly runs in block ``index``'s message and is retried with it;
    each attempt is recorded first (``assembling/<index>.json``), and a
    failure of its last attempt is recorded (``assembly-failed/<index>.json``)
    before it is raised, so the job ends ``failed`` with the reason rather
    than ``running`` with every block done."""
    if len(files.done_blocks(job_id)) < len(plan["blocks"]) or files.exists(job_id, "results.json"):
        return False
    last = attempt >= settings.job_max_receive_count
    files.write_json(job_id, ("assembling", f"{index}.json"), _attempt_doc(attempt, last))
    try:
        assembly.assemble(store, settings, files, job_id, plan)
    except Exception as exc:
        if last:
            files.write_json(job_id, ("assembly-failed", f"{index}.json"), _error_doc(exc, attempt))
        raise
    return True


def _error_doc(exc: BaseException, attempt: int) -> dict[str, Any]:
    if isinstance(exc, ServiceError):
        return {"error": exc.CODE, "message": exc.message, "attempts": attempt, "at": iso(time.time())}
    return {
        "error": "PROCESSING_FAILED",
        "message": f"{type(exc).__name__}: {scrub(str(exc))[:500]}",
        "attempts": attempt,
        "at": iso(time.time()),
    }


def block_of(record: dict[str, Any]) -> tuple[str, int] | None:
    """The ``(jobId, block)`` an SQS record names, or ``None`` (logged) if it names none."""
    try:
        body = json.loads(record.get("body") or "")
        job_id, index = body["jobId"], body["block"]
        if not isinstance(job_id, str) or not is_job_id(job_id) or not isinstance(index, int):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        # Not ours (or mangled): retrying cannot help, and nothing depends on it.
        log.warning("dropped an SQS message that names no job block: %r", str(record.get("body"))[:200])
        return None
    return job_id, index


def handle_records(
    store: Store, settings: Settings, models: ModelCache, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """An SQS batch -> ``{"batchItemFailures": [...]}`` (only failed blocks come back)."""
    if settings.bucket:
        # Created on the container's first batch, beside its model load, not in the assembly:
        # the one step of a job no other worker shares (boto3 takes ~0.1 s to build a client).
        s3.client(settings)
    failures = []
    files = JobFiles(store.root)
    for record in records:
        named = block_of(record)
        if named is None:
            continue
        job_id, index = named
        attempt = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            outcome = run_block(store, settings, models, job_id, index, attempt)
            log.info("job %s block %d: %s (attempt %d)", job_id, index, outcome, attempt)
        except Exception as exc:  # noqa: BLE001 - every failure is reported on the job
            doc = _error_doc(exc, attempt)
            log.warning("job %s block %d failed (attempt %d): %s", job_id, index, attempt, doc["message"])
            try:
                files.write_json(job_id, ("errors", f"{index}.json"), doc)
                if attempt >= settings.job_max_receive_count:
                    files.write_json(job_id, ("failed", f"{index}.json"), doc)
            except ServiceError:
                log.exception("could not record the failure of job %s block %d", job_id, index)
            failures.append({"itemIdentifier": record.get("messageId", "")})
    return {"batchItemFailures": failures}
