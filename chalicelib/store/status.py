"""Ingest states on the store: what is pending or failed, beside the manifests.

A manifest says what is *ready*. A status record says what happened to the
latest ingest attempt of a name when that is not (yet) a success::

    .meta/status/<kind>/<name>.json    pending | failed, for a storable name
    .meta/status/rejected/<id>.json    failed, for an S3 key whose name cannot
                                       be stored (invalid, too long); <id> is
                                       a hash of the raw key, which the record
                                       echoes (bounded)

No record means nothing is outstanding: a success removes the record it
supersedes, so the common path (ready, never failed) costs one ``lstat``
(served from the attribute cache: no EFS round trip) and no write.

Writes need no lock. Each state change is one atomic write (temp file,
fsync, rename: a reader sees a whole record or the previous one). Records
are ordered by the start of the attempt they describe (``startedNs``), and a
writer keeps a newer record it finds (``failed``/``settle`` read it first;
``pending`` is always the newest: its attempt starts as it is written).
Two writers racing within that read-then-rename window can leave the older
attempt's record; the next attempt of the name (a retry, the hand-off's own
event) settles it. Clocks are the functions' (NTP-synced); the order only
has to be right between attempts seconds apart.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import EfsWriteFailed, ServiceError
from chalicelib.names import INGEST_KINDS, ObjectRef
from chalicelib.store import commit, fs
from chalicelib.store.commit import META, TEMP_RE

STATUS = "status"
REJECTED = "rejected"
PENDING, FAILED, READY = "pending", "failed", "ready"
MAX_ECHO_CHARS = 1024  # a raw key echoed back (S3 keys are at most 1024 bytes)
MAX_MESSAGE_CHARS = 1024


@dataclass(frozen=True)
class StatusRecord:
    """The latest unsettled ingest attempt of one name (or unstorable key)."""

    state: str  # pending | failed
    key: str  # the S3 key (or inline filename key), bounded
    kind: str  # models | inputs | the key's first segment for a rejected key
    name: str | None  # None: the key's name could not be stored
    time: str  # when this state was recorded (ISO 8601, UTC)
    startedNs: int  # when its attempt started (orders records)
    requestId: str | None = None
    error: dict[str, str] | None = None  # {"error": CODE, "message": ...} when failed
    id: str | None = None  # the record's id, for rejected keys

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StatusRecord | None:
        try:
            doc = json.loads(raw)
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> dict[str, Any]:
        """The record as clients see it (``GET /models``, ``GET /models/{name}``)."""
        body: dict[str, Any] = {"state": self.state, "stateTime": self.time, "key": self.key}
        if self.requestId:
            body["requestId"] = self.requestId
        if self.error is not None:
            body["error"] = {**self.error, "time": self.time}
        return body


def stamp() -> int:
    """An attempt's start, for ordering records."""
    return time.time_ns()


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def rejected_id(key: str) -> str:
    """A safe, stable file name for any raw key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _error(exc: ServiceError) -> dict[str, str]:
    return {"error": exc.CODE, "message": exc.message[:MAX_MESSAGE_CHARS]}


class StatusRecords:
    """Status records of one store (see the module docstring)."""

    def __init__(self, dirs: fs.Dirs) -> None:
        self._dirs = dirs
        self._made = False

    def _parts(self, kind: str) -> tuple[str, ...]:
        if not self._made:
            # Created once, kept open: a missing directory would cost a
            # failed open (one EFS round trip) on every lookup.
            try:
                for sub in (*INGEST_KINDS, REJECTED):
                    commit.directory(self._dirs, META, STATUS, sub)
                self._made = True
            except EfsWriteFailed:
                pass  # a damaged layout: reads find nothing, writes raise (atomic_write checks again)
        return (META, STATUS, kind)

    def _read(self, parts: tuple[str, ...], entry: str) -> StatusRecord | None:
        try:
            fd = self._dirs.open(parts, entry)
        except OSError:
            return None
        try:
            return StatusRecord.from_json(fs.read_all(fd))
        except OSError:
            return None
        finally:
            fs.close_quietly(fd)

    def _lookup(self, parts: tuple[str, ...], entry: str) -> StatusRecord | None:
        if self._dirs.lstat(parts, entry) is None:  # attribute cache: no round trip
            return None
        return self._read(parts, entry)

    # -- reading -------------------------------------------------------------
    def get(self, ref: ObjectRef) -> StatusRecord | None:
        """The unsettled attempt of ``ref``, if any."""
        return self._lookup(self._parts(ref.kind), ref.name + ".json")

    def list(self, kind: str) -> list[StatusRecord]:
        """Records of one kind by name, then rejected keys under ``<kind>/``."""
        out: list[StatusRecord] = []
        for parts, prefix in ((self._parts(kind), None), (self._parts(REJECTED), kind + "/")):
            for entry in sorted(self._dirs.listdir(parts)):
                if entry.startswith(".") or not entry.endswith(".json"):
                    continue  # temp files of a writer
                record = self._read(parts, entry)
                if record is not None and (prefix is None or record.key.startswith(prefix)):
                    out.append(record)
        return out

    def names(self, kind: str) -> tuple[str, ...]:
        """Names of one kind with a record, sorted, from one directory listing (no record read)."""
        entries = self._dirs.listdir(self._parts(kind))
        return tuple(sorted(e[:-5] for e in entries if e.endswith(".json") and e[0] != "."))

    def rejected_ids(self) -> tuple[str, ...]:
        """Ids of the rejected keys' records (of every kind), sorted, from one directory listing."""
        return self.names(REJECTED)

    def rejected_by_id(self, record_id: str) -> StatusRecord | None:
        """The record of a rejected key by its id (what a listing pages by), if any."""
        return self._lookup(self._parts(REJECTED), record_id + ".json")

    # -- writing -------------------------------------------------------------
    def pending(self, ref: ObjectRef, key: str, started: int, request_id: str | None) -> StatusRecord:
        """Record that an ingest of ``ref`` was accepted and has not landed yet."""
        record = StatusRecord(PENDING, key[:MAX_ECHO_CHARS], ref.kind, ref.name, _iso(stamp()), started, request_id)
        commit.atomic_write(self._dirs, self._parts(ref.kind), ref.name + ".json", record.to_json(), stage="status")
        return record

    def failed(self, ref: ObjectRef, key: str, exc: ServiceError, started: int, request_id: str | None = None) -> None:
        """Record that the attempt of ``ref`` started at ``started`` failed with
        ``exc`` (unless a newer attempt's record is there). The failure of an
        accepted ingest keeps the accepting request's id."""
        parts, entry = self._parts(ref.kind), ref.name + ".json"
        current = self._lookup(parts, entry)
        if current is not None and current.startedNs > started:
            return  # a newer attempt's state stands
        if request_id is None and current is not None and current.state == PENDING:
            request_id = current.requestId
        record = StatusRecord(
            FAILED, key[:MAX_ECHO_CHARS], ref.kind, ref.name, _iso(stamp()), started, request_id, _error(exc)
        )
        commit.atomic_write(self._dirs, parts, entry, record.to_json(), stage="status")

    def rejected(self, key: str, exc: ServiceError, request_id: str | None = None) -> None:
        """Record that S3 key ``key`` cannot be stored under its name."""
        rid = rejected_id(key)
        kind = key.split("/", 1)[0][:64] if "/" in key else ""
        now = stamp()
        record = StatusRecord(FAILED, key[:MAX_ECHO_CHARS], kind, None, _iso(now), now, request_id, _error(exc), rid)
        commit.atomic_write(self._dirs, self._parts(REJECTED), rid + ".json", record.to_json(), stage="status")

    def succeeded(self, ref: ObjectRef, started: int) -> None:
        """An attempt of ``ref`` started at ``started`` succeeded: drop the
        record it supersedes (one it started after); keep a newer one."""
        self._drop_older(ref, started, None)

    def key_gone(self, ref: ObjectRef, started: int, key: str) -> None:
        """S3 key ``key`` of ``ref`` is gone: drop a record of an attempt on
        that very key started by ``started`` (nothing is outstanding for it);
        keep a newer one, or one of another key of the name."""
        self._drop_older(ref, started, key)

    def _drop_older(self, ref: ObjectRef, started: int, key: str | None) -> None:
        parts, entry = self._parts(ref.kind), ref.name + ".json"
        current = self._lookup(parts, entry)
        if current is not None and current.startedNs <= started and (key is None or current.key == key):
            self._dirs.unlink_quietly(parts, entry)

    def get_rejected(self, key: str) -> StatusRecord | None:
        """The record of S3 key ``key`` whose name cannot be stored, if any."""
        return self._lookup(self._parts(REJECTED), rejected_id(key) + ".json")

    def clear_rejected(self, key: str) -> None:
        """Forget the record of the unstorable key ``key`` (it was deleted in S3)."""
        self._drop(self._parts(REJECTED), rejected_id(key) + ".json")

    def clear(self, ref: ObjectRef) -> None:
        """Forget ``ref``'s record, whatever it says (the object was deleted).

        The ``lstat`` is free (attribute cache); an unlink is a write round trip,
        paid only when there is a record.
        """
        self._drop(self._parts(ref.kind), ref.name + ".json")

    def _drop(self, parts: tuple[str, ...], entry: str) -> None:
        if self._dirs.lstat(parts, entry) is not None:
            self._dirs.unlink_quietly(parts, entry)

    # -- debris --------------------------------------------------------------
    def reclaim(self, cutoff: float) -> int:
        """Remove temp files of dead writers older than ``cutoff`` (epoch seconds).

        Temp names are random per writer, so no lock is needed: a live
        writer's temp is younger than any sensible cutoff.
        """
        removed = 0
        for sub in (*INGEST_KINDS, REJECTED):
            parts = self._parts(sub)
            for entry in self._dirs.listdir(parts):
                st = self._dirs.lstat(parts, entry)
                if TEMP_RE.match(entry) and st is not None and st.st_mtime <= cutoff:
                    self._dirs.unlink_quietly(parts, entry)
                    removed += self._dirs.lstat(parts, entry) is None
        return removed
