"""The jobs use cases behind the routes: create, status, list, cancel, expire."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from chalicelib import paging, s3
from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound, ServiceError
from chalicelib.jobs import queue
from chalicelib.jobs.plan import JobRequest, plan_blocks
from chalicelib.jobs.state import JobFiles, Progress, is_job_id, iso, new_job_id
from chalicelib.store import Store

MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
FINISHED = ("succeeded", "failed", "cancelled")


def create_job(store: Store, settings: Settings, req: JobRequest, request_id: str) -> dict[str, Any]:
    """Plan the blocks, write the plan, send one message per block: the 202 body."""
    if not settings.job_queue_url:
        raise InvalidRequest("Batch jobs are not configured here (JOB_QUEUE_URL is unset)")
    model = store.manifest(req.model)
    if model is None:
        raise NotFound(None, f"Model '{req.model.name}' not found on EFS")
    if req.version is not None and req.version != model.version:
        raise NotFound(None, f"Model '{req.model.name}' has no version {req.version} on the store")
    inputs, blocks = plan_blocks(store, settings, req)
    job_id = new_job_id()
    now = time.time()
    plan = {
        "jobId": job_id,
        "model": {"key": req.model.key, "version": model.version, "sha256": model.sha256},
        "source": {"input": req.input.key} if req.input else {"inputPrefix": f"inputs/{req.prefix}"},
        "batchSize": None if req.prefix is not None else blocks[0]["stop"] - blocks[0]["start"],
        "outputs": list(req.outputs) if req.outputs else None,
        "inputs": inputs,
        "blocks": blocks,
        "createdAt": iso(now),
        "requestId": request_id,
    }
    files = JobFiles(store.root)
    # The plan first: a worker that gets a message always finds its job.
    files.write_json(job_id, ("job.json",), plan)
    try:
        queue.send_blocks(settings.job_queue_url, job_id, range(len(blocks)))
    except ServiceError as exc:
        # Messages already sent are skipped by the workers.
        files.write_json(job_id, ("cancelled",), {"at": iso(time.time()), "reason": exc.message})
        raise
    return {
        "jobId": job_id,
        "statusUrl": f"/jobs/{job_id}",
        "state": "pending",
        "blocks": len(blocks),
        "rows": sum(b["stop"] - b["start"] for b in blocks),
        "requestId": request_id,
    }


STOPPED = "the worker stopped during its last attempt (timeout or out of memory)"
STOPPED_ASSEMBLING = "the worker stopped while assembling the outputs, on its last attempt (timeout or out of memory)"


def _overdue(settings: Settings, doc: dict[str, Any], now: float) -> bool:
    """Whether an attempt that started per ``doc`` can no longer be running."""
    started = doc.get("t")
    return isinstance(started, (int, float)) and now - started > settings.job_attempt_timeout_seconds


def stopped_failure(settings: Settings, doc: dict[str, Any], message: str) -> dict[str, Any]:
    """The failure of an attempt that started per ``doc`` and left nothing: it ended by the bound."""
    at = float(doc.get("t") or 0) + settings.job_attempt_timeout_seconds
    return {"error": "PROCESSING_FAILED", "message": message, "attempts": doc.get("attempt"), "at": iso(at)}


def _failed_blocks(settings: Settings, progress: Progress, now: float) -> dict[int, dict[str, Any]]:
    """Blocks that gave up: recorded failures, and last attempts whose worker
    was stopped (started longer ago than JOB_ATTEMPT_TIMEOUT_SECONDS, nothing since)."""
    failed = {i: d for i, d in progress.failed.items() if i not in progress.done}
    for i, doc in progress.last_attempts.items():
        if i not in progress.done and i not in failed and _overdue(settings, doc, now):
            failed[i] = stopped_failure(settings, doc, STOPPED)
    return failed


def _assembly_error(settings: Settings, progress: Progress, now: float) -> dict[str, Any] | None:
    """Why the assembly will never finish, or ``None`` while an attempt may still
    come: every assembly attempt was its message's last, and each failed or
    stopped (nothing after JOB_ATTEMPT_TIMEOUT_SECONDS)."""
    if progress.results is not None or not progress.assembling:
        return None
    reasons: list[dict[str, Any]] = []
    for i, doc in progress.assembling.items():
        if i in progress.assembly_failed:
            reasons.append(progress.assembly_failed[i])
        elif doc.get("last") and _overdue(settings, doc, now):
            reasons.append(stopped_failure(settings, doc, STOPPED_ASSEMBLING))
        else:
            return None  # this message is retried (or still running)
    latest: dict[str, Any] = max(reasons, key=_at)
    return {"stage": "assembly", **latest}


def _at(doc: dict[str, Any]) -> str:
    return str(doc.get("at") or "")


def _state(total: int, progress: Progress, failed: dict[int, Any], assembly_error: dict[str, Any] | None) -> str:
    if progress.results is not None:
        return "succeeded"
    if progress.cancelled is not None:
        return "cancelled"
    if failed and len(progress.done | set(failed)) >= total:
        return "failed"
    if assembly_error is not None:
        return "failed"
    if progress.started is not None or progress.done or failed:
        return "running"
    return "pending"


def _results(settings: Settings, results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, entry in results["outputs"].items():
        url = None
        if entry.get("s3Key") and settings.bucket:
            url = s3.presign_get(settings, settings.bucket, entry["s3Key"], settings.result_url_expires_seconds)
        out[name] = {**entry, "url": url, "expiresIn": settings.result_url_expires_seconds if url else None}
    return out


def job_status(store: Store, settings: Settings, job_id: str, *, links: bool = True) -> dict[str, Any]:
    """``GET /jobs/{id}``: state, progress derived from the block files, errors, results
    (with presigned GET URLs unless ``links`` is false: the retention sweep
    only needs the state, and its role signs nothing)."""
    files = JobFiles(store.root)
    plan = files.plan(job_id)
    blocks = plan["blocks"]
    total = len(blocks)
    progress = files.progress(job_id, total)
    now = time.time()
    failed = _failed_blocks(settings, progress, now)
    assembly_error = _assembly_error(settings, progress, now)
    state = _state(total, progress, failed, assembly_error)
    errors: list[dict[str, Any]] = []
    for i, doc in sorted(failed.items()):
        block = blocks[i] if 0 <= i < total else {"input": 0, "start": 0, "stop": 0}
        errors.append(
            {
                "block": i,
                "input": plan["inputs"][block["input"]]["key"],
                "rows": [block["start"], block["stop"]],
                **doc,
            }
        )
    if assembly_error is not None and state == "failed":
        errors.append({"block": None, **assembly_error})
    finished = None
    if progress.results is not None:
        finished = progress.results.get("finishedAt")
    elif state == "failed" and assembly_error is not None:
        finished = assembly_error.get("at")
    elif state == "failed":
        finished = max((d.get("at") or "" for d in failed.values()), default=None) or None
    elif progress.cancelled is not None:
        finished = progress.cancelled.get("at")
    body: dict[str, Any] = {
        "jobId": job_id,
        "state": state,
        "model": {"key": plan["model"]["key"], "version": plan["model"]["version"]},
        **plan["source"],
        "batchSize": plan["batchSize"],
        "blocks": {
            "total": total,
            "done": len(progress.done),
            "failed": len(failed),
            "pending": total - len(progress.done) - len(failed),
        },
        "rows": {
            "total": sum(b["stop"] - b["start"] for b in blocks),
            "done": sum(blocks[i]["stop"] - blocks[i]["start"] for i in progress.done if 0 <= i < total),
        },
        "createdAt": plan["createdAt"],
        "startedAt": iso(progress.started) if progress.started is not None else None,
        "finishedAt": finished,
        "errors": errors,
        "requestId": plan.get("requestId"),
    }
    if progress.cancelled is not None:
        body["cancelledAt"] = progress.cancelled.get("at")
        if progress.cancelled.get("reason"):
            body["cancelReason"] = progress.cancelled["reason"]
    if progress.results is not None:
        body["results"] = _results(settings, progress.results) if links else progress.results["outputs"]
    return body


def list_jobs(store: Store, settings: Settings, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``GET /jobs``: newest first, ``limit`` (<= 100) per page, ``next`` to continue
    (the same pager, token and checks as ``GET /models``)."""
    request = paging.parse(
        params, "jobs", lambda _, key: is_job_id(key), default_limit=DEFAULT_LIST_LIMIT, max_limit=MAX_LIST_LIMIT
    )

    def load(_: int, job_id: str) -> dict[str, Any] | None:
        try:
            status = job_status(store, settings, job_id, links=False)
        except NotFound:
            return None  # expired between the listing and the read
        status.pop("results", None)
        status.pop("errors", None)
        return status

    page = paging.paginate("jobs", (JobFiles(store.root).job_ids(),), load, request, descending=True)
    return {"jobs": page.items, "next": page.next}


def cancel_job(store: Store, settings: Settings, job_id: str) -> dict[str, Any]:
    """``DELETE /jobs/{id}``: blocks not yet started are skipped; a finished job stays as it is."""
    files = JobFiles(store.root)
    files.plan(job_id)
    status = job_status(store, settings, job_id)
    if status["state"] not in FINISHED:
        files.create_once(job_id, "cancelled", {"at": iso(time.time())})
        status = job_status(store, settings, job_id)
    return status
