"""RESULT_RETENTION_DAYS on the store: results and finished jobs expire.

S3 expires the same objects by a lifecycle rule on ``outputs/`` and
``jobs/`` (infra); this is the store's side, run by the hourly sweep beside
the debris reclaim. A result is expired by its manifest's ``updated`` time
(a result rewritten by a repeat request lives on); a job once it is
finished (succeeded, failed or cancelled) and older than the retention,
counted from when it finished. Jobs still running are never touched.
"""

from __future__ import annotations

import time
from datetime import datetime

from chalicelib.config import Settings
from chalicelib.errors import NotFound
from chalicelib.jobs import service
from chalicelib.jobs.state import JobFiles
from chalicelib.names import OUTPUTS, ObjectRef
from chalicelib.store import Store

DAY = 86400.0


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def expire(store: Store, settings: Settings, now: float | None = None) -> dict[str, int]:
    """Delete results and finished jobs past RESULT_RETENTION_DAYS (0: keep all); counts removed."""
    days = settings.result_retention_days
    if days <= 0:
        return {"outputs": 0, "jobs": 0}
    cutoff = (time.time() if now is None else now) - days * DAY
    outputs = 0
    for manifest in store.list(OUTPUTS):
        updated = _epoch(manifest.updated)
        if updated is not None and updated <= cutoff:
            ref = ObjectRef(OUTPUTS, manifest.key.split("/", 1)[1])
            # Re-checked under the writer lock: a result rewritten meanwhile stays.
            if store.delete(ref, before=lambda m: (_epoch(m.updated) or cutoff + 1) <= cutoff) is not None:
                outputs += 1
    jobs = 0
    files = JobFiles(store.root)
    for job_id in files.job_ids():
        try:
            status = service.job_status(store, settings, job_id, links=False)
        except NotFound:
            continue
        finished = _epoch(status.get("finishedAt"))
        if status["state"] in service.FINISHED and finished is not None and finished <= cutoff:
            files.remove(job_id)
            jobs += 1
    return {"outputs": outputs, "jobs": jobs}
