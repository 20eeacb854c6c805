"""A job's state on the store: one immutable plan and one file per event.

Layout under ``<EFS_ROOT>/jobs/<jobId>/``::

    job.json            the plan (written once, before any message is sent)
    started             created exclusively by the first worker that starts a block
    cancelled           DELETE /jobs/{id} (blocks not yet started are skipped)
    blocks/<i>.npz      block i's outputs: its presence *is* "block i done"
    errors/<i>.json     the last failed attempt of block i (overwritten per attempt)
    failed/<i>.json     block i gave up (its last attempt: the message goes to the DLQ)
    last-attempt/<i>.json  block i's last allowed attempt started (attempt, at): if
                        neither its result nor its failure follows within
                        JOB_ATTEMPT_TIMEOUT_SECONDS, its worker was stopped
    assembling/<i>.json the message of block i started assembling (attempt, at, last)
    assembly-failed/<i>.json  that assembly failed on its message's last attempt
    results.json        the assembled outputs (written last: the job succeeded)

Concurrent workers never read-modify-write a shared record: every write
creates or atomically replaces a file that only one block (or the job's
single first start) owns, and progress is derived from directory listings
(one readdir per directory on EFS, ~1 ms each), so two workers finishing at
once cannot lose a count. Every write is a temp file, fsync, rename: a
reader sees a whole file or none, and a repeated write of a block's result
replaces it with the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import EfsWriteFailed, NotFound

JOBS = "jobs"
_JOB_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$")
_BLOCK_FILE = re.compile(r"^([0-9]{1,9})\.(npz|json)$")


def new_job_id(now: float | None = None) -> str:
    """A job id that sorts by creation time: ``20261204T183501Z-3f2a9c1b4d5e``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{uuid.uuid4().hex[:12]}"


def is_job_id(text: str) -> bool:
    """Whether ``text`` has the shape of a job id (so it is safe as a path component)."""
    return bool(_JOB_ID.match(text))


def iso(ts: float) -> str:
    """A POSIX time as ISO 8601 UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class Progress:
    """What the listings of one job say, at one moment."""

    done: frozenset[int]
    failed: dict[int, dict[str, Any]]
    started: float | None
    cancelled: dict[str, Any] | None
    results: dict[str, Any] | None
    last_attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Blocks neither done nor failed whose last allowed attempt has started."""
    assembling: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Assembly attempts (by the block whose message ran them), once every block is done."""
    assembly_failed: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Assemblies that failed on their message's last attempt (same keys)."""


class JobFiles:
    """The ``jobs/`` folder of a store root: paths and atomic writes."""

    def __init__(self, root: str) -> None:
        self.root = os.path.join(os.path.abspath(root), JOBS)

    def path(self, job_id: str, *parts: str) -> str:
        """A path inside one job's folder (the id must already be checked)."""
        return os.path.join(self.root, job_id, *parts)

    # -- writes --------------------------------------------------------------
    def write(self, job_id: str, parts: tuple[str, ...], data: bytes) -> None:
        """Write ``parts`` of ``job_id`` whole or not at all (temp, fsync, rename)."""
        target = self.path(job_id, *parts)
        folder = os.path.dirname(target)
        tmp = os.path.join(folder, f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, target)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise EfsWriteFailed("job", f"Failed to write job state on EFS ({exc.strerror or exc})") from None

    def write_json(self, job_id: str, parts: tuple[str, ...], doc: dict[str, Any]) -> None:
        """:meth:`write` of a JSON document."""
        self.write(job_id, parts, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())

    def create_once(self, job_id: str, name: str, doc: dict[str, Any]) -> bool:
        """Create ``name`` exclusively (one open on EFS); False if it already exists."""
        try:
            fd = os.open(self.path(job_id, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise EfsWriteFailed("job", f"Failed to write job state on EFS ({exc.strerror or exc})") from None
        try:
            os.write(fd, json.dumps(doc).encode())
        finally:
            os.close(fd)
        return True

    # -- reads ---------------------------------------------------------------
    def read_json(self, job_id: str, *parts: str) -> dict[str, Any] | None:
        """A JSON file of the job, or ``None`` if absent (or, for a marker, empty)."""
        try:
            with open(self.path(job_id, *parts), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}  # a marker being written by create_once: present, contents unknown
        return doc if isinstance(doc, dict) else {}

    def plan(self, job_id: str) -> dict[str, Any]:
        """The job's plan; 404 if there is no such job."""
        doc = self.read_json(job_id, "job.json") if is_job_id(job_id) else None
        if doc is None:
            raise NotFound(None, f"Job '{job_id[:80]}' not found")
        return doc

    def exists(self, job_id: str, *parts: str) -> bool:
        """Whether a file of the job exists (one lookup)."""
        return os.path.exists(self.path(job_id, *parts))

    def _indices(self, job_id: str, folder: str, suffix: str) -> list[int]:
        try:
            names = os.listdir(self.path(job_id, folder))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            m = _BLOCK_FILE.match(name)
            if m and m.group(2) == suffix:
                out.append(int(m.group(1)))
        return out

    def done_blocks(self, job_id: str) -> frozenset[int]:
        """Blocks whose result file exists (one readdir)."""
        return frozenset(self._indices(job_id, "blocks", "npz"))

    def _docs(self, job_id: str, folder: str, skip: frozenset[int] | set[int] = frozenset()) -> dict[int, Any]:
        """``folder/<i>.json`` of every block not in ``skip`` (one readdir, one read each)."""
        docs = {}
        for i in self._indices(job_id, folder, "json"):
            if i not in skip:
                docs[i] = self.read_json(job_id, folder, f"{i}.json") or {}
        return docs

    def progress(self, job_id: str, total: int | None = None) -> Progress:
        """Everything the job's files say now (a few readdirs and small reads).

        Only what can still decide the state is read: the last-attempt
        records of blocks neither done nor failed (few: those running their
        last attempt, or whose worker died in it), and the assembly records
        once every one of ``total`` blocks is done and nothing is assembled."""
        done = self.done_blocks(job_id)
        failed = self._docs(job_id, "failed")
        results = self.read_json(job_id, "results.json")
        last = self._docs(job_id, "last-attempt", done | set(failed)) if results is None else {}
        assembling: dict[int, Any] = {}
        assembly_failed: dict[int, Any] = {}
        if results is None and total is not None and len(done) >= total:
            assembling = self._docs(job_id, "assembling")
            assembly_failed = self._docs(job_id, "assembly-failed")
        started = None
        try:
            started = os.stat(self.path(job_id, "started")).st_mtime
        except FileNotFoundError:
            pass
        return Progress(
            done=done,
            failed=failed,
            started=started,
            cancelled=self.read_json(job_id, "cancelled"),
            results=results,
            last_attempts=last,
            assembling=assembling,
            assembly_failed=assembly_failed,
        )

    def job_ids(self) -> list[str]:
        """Every job id, newest first."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted((n for n in names if is_job_id(n)), reverse=True)

    def remove(self, job_id: str) -> None:
        """Delete a job's folder (the retention sweep)."""
        shutil.rmtree(self.path(job_id), ignore_errors=True)
