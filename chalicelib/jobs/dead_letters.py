"""The dead-letter queue's edge: a block whose every delivery ended without
an answer is recorded on its job, so the job finishes instead of staying
``running``.

A worker records its own failures (``errors/``, ``failed/``) and, on a last
attempt, its start (``last-attempt/``). What it cannot record is a delivery
that ends before the handler runs or can write anything: the function fails
to initialise, is throttled while the mapping keeps receiving, or is killed
(timeout, out of memory) before its first write. After ``maxReceiveCount``
such deliveries SQS moves the message to the DLQ, and only the DLQ knows.
``fail_dead_blocks`` (the DLQ's own event source mapping) reads it:

* a block already done, or already failed, is not changed (a repeat of the
  same dead letter changes nothing either);
* a block whose last attempt recorded its start is failed as the status read
  would judge it after JOB_ATTEMPT_TIMEOUT_SECONDS: "the worker stopped during
  its last attempt" (the DLQ is the proof that the attempt is over);
* any other block is failed with "every delivery of block N ended without an
  answer", naming the last error an earlier attempt recorded, if any;
* a done block whose job has every block done but no results, and whose
  message never recorded a last assembly attempt, records that its assembly
  gave up (the message that could have assembled is dead).

The message is then deleted from the DLQ: the job names the block, its rows
and the reason, and re-sending ``{"jobId", "block"}`` to the jobs queue runs
it again (a result that arrives later still counts). A dead letter naming no
job on this store is returned as a failure and stays in the DLQ (its alarm).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chalicelib import observability
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest
from chalicelib.jobs.service import STOPPED, stopped_failure
from chalicelib.jobs.state import JobFiles, iso
from chalicelib.jobs.worker import block_of
from chalicelib.store import Store

log = logging.getLogger(__name__)

DEAD = "every delivery of block {index} ended without an answer: the Lambda timed out or was killed"


def _dead_doc(settings: Settings, files: JobFiles, job_id: str, index: int, now: float) -> dict[str, Any]:
    """Why block ``index`` gave up, from what its attempts left behind."""
    last = files.read_json(job_id, "last-attempt", f"{index}.json")
    if last is not None:
        doc = stopped_failure(settings, last, STOPPED)
        started = last.get("t")
        if isinstance(started, (int, float)) and started + settings.job_attempt_timeout_seconds > now:
            doc["at"] = iso(now)  # sooner than the status read's bound: the DLQ says the attempt is over
        return doc
    message = DEAD.format(index=index) + " (or never started: an initialisation failure or throttling)"
    earlier = files.read_json(job_id, "errors", f"{index}.json")
    if earlier and earlier.get("message"):
        message += f"; attempt {earlier.get('attempts')} had failed with: {earlier['message']}"
    return {
        "error": "PROCESSING_FAILED",
        "message": message,
        "attempts": settings.job_max_receive_count,
        "at": iso(now),
    }


def record_dead_block(store: Store, settings: Settings, job_id: str, index: int) -> str:
    """Record dead-lettered block ``index`` of ``job_id`` on the job; returns
    ``failed``, ``assembly-failed`` or ``unchanged``."""
    files = JobFiles(store.root)
    plan = files.plan(job_id)  # NotFound: not a job of this store
    total = len(plan["blocks"])
    if not 0 <= index < total:
        raise InvalidRequest(f"Job '{job_id}' has no block {index}")
    if files.exists(job_id, "results.json") or files.exists(job_id, "failed", f"{index}.json"):
        return "unchanged"
    now = time.time()
    if files.exists(job_id, "blocks", f"{index}.npz"):
        if len(files.done_blocks(job_id)) < total or files.exists(job_id, "assembly-failed", f"{index}.json"):
            return "unchanged"
        attempt = files.read_json(job_id, "assembling", f"{index}.json")
        if attempt is not None and attempt.get("last"):
            return "unchanged"  # its last assembly attempt is on record: the status read judges it
        message = f"{DEAD.format(index=index)}, and it was the message that assembles the outputs"
        doc = {"error": "PROCESSING_FAILED", "message": message, "attempts": settings.job_max_receive_count}
        doc["at"] = iso(now)
        # The assembly's last attempt (this message's) first, then its failure: the order the worker writes them.
        files.write_json(
            job_id,
            ("assembling", f"{index}.json"),
            {"attempt": doc["attempts"], "last": True, "at": iso(now), "t": now},
        )
        files.write_json(job_id, ("assembly-failed", f"{index}.json"), doc)
        observability.metric("JobBlocksDeadLettered", 1)
        return "assembly-failed"
    files.write_json(job_id, ("failed", f"{index}.json"), _dead_doc(settings, files, job_id, index, now))
    observability.metric("JobBlocksDeadLettered", 1)
    return "failed"


def handle_dead_letters(store: Store, settings: Settings, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of the DLQ -> ``{"batchItemFailures": [...]}``: each dead block is
    recorded on its job; one that cannot be recorded stays in the DLQ."""
    failures = []
    for record in records:
        named = block_of(record)
        if named is None:
            continue  # names no job block: nothing to record
        job_id, index = named
        try:
            outcome = record_dead_block(store, settings, job_id, index)
            log.info("job %s block %d: dead-lettered, %s", job_id, index, outcome)
        except Exception:  # noqa: BLE001 - it stays in the DLQ, whose alarm notifies
            log.exception("could not record dead-lettered job %s block %d", job_id, index)
            failures.append({"itemIdentifier": record.get("messageId", "")})
    return {"batchItemFailures": failures}
