"""The manifest: what the store knows of one object, committed with it.

Besides the documented fields (size, sha256, source, ETag, versions, times,
fileId), a manifest written by this store records the identity its object
had at commit: inode and modification time (``inode``, ``mtimeNs``). The
object is only ever replaced by rename, which keeps both, so an ``fstat`` of
an opened object (or an ``lstat`` of its name, from the attribute cache)
that matches them proves the pair belongs together without a lock and
without re-hashing; any mismatch (a commit in flight, a crash, tampering)
sends the caller to the slow, locked or hashing path.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import orjson


@dataclass(frozen=True)
class Manifest:
    """What the store knows of one object, written atomically with it."""

    fileId: str
    key: str
    size: int
    sha256: str
    version: int
    source: str
    etag: str | None
    created: str
    updated: str
    inode: int | None = None
    """Inode of the object at commit (``None``: written by an older store)."""
    mtimeNs: int | None = None
    """Modification time of the object at commit, in ns."""
    previous: list[dict[str, Any]] | None = None
    """The other kept versions' manifests (JSON objects without ``previous``), newest first."""
    latest: int | None = None
    """The highest version number committed for this name (``None``: ``version``)."""
    versionCreated: str | None = None
    """When this version's bytes were committed (``None``: ``updated``)."""

    @property
    def latest_version(self) -> int:
        """The highest version number this name has had (the next is one more)."""
        return max(self.version, self.latest or 0)

    @property
    def committed(self) -> str:
        """When this version's bytes were committed (a rollback does not move it)."""
        return self.versionCreated or self.updated

    def kept(self) -> dict[int, Manifest]:
        """Every kept version by number, this (current) one included."""
        out = {self.version: self.alone()}
        for doc in self.previous or ():
            m = Manifest.from_dict(doc)
            out.setdefault(m.version, m)
        return out

    def alone(self) -> Manifest:
        """This version's manifest without the other versions' (what ``previous`` stores)."""
        return replace(self, previous=None) if self.previous else self

    signature: dict[str, Any] | None = None
    """A model's signature (``chalicelib.signature.Signature.to_json()``), read
    from its bytes at ingest; ``None`` for inputs, outputs and models stored
    before signatures were recorded."""
    format: str | None = None
    """A model's format by content (``onnx`` or ``opaque``); ``None`` as above."""
    scan: dict[str, Any] | None = None
    """What ingest's scan of an ONNX model's bytes saw
    (``chalicelib.runners.onnx_scan.ScanReport.to_json()``), bound to ``sha256``:
    a load whose bytes hash to it need not scan them again. ``None``: not an
    ONNX model, or stored before reports were recorded (the load scans)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        # orjson: every request reads one or two manifests (a quarter of json's time).
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        """A manifest from its JSON object (unknown keys ignored)."""
        return cls(**{k: v for k, v in doc.items() if k in _FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describes(self, st: os.stat_result | None) -> bool:
        """Whether ``st`` is the very object this manifest was committed with."""
        return (
            st is not None
            and self.inode is not None
            and stat.S_ISREG(st.st_mode)
            and st.st_ino == self.inode
            and st.st_size == self.size
            and st.st_mtime_ns == self.mtimeNs
        )

    def plausibly_describes(self, st: os.stat_result | None) -> bool:
        """:meth:`describes`, or for a manifest without identity the old size check.

        Kept on purpose, with the rest of the first format's reading
        (``commit._legacy_intent``, ``core._legacy_index``): infra/README.md
        gives upgrade steps for stacks deployed before ``az_ids`` and
        region-carrying names, so deployed stores are taken to exist; an
        upgrade never rewrites the store on EFS, and a model not re-ingested
        since keeps its first-format manifest (and fileId index entry). Dropping
        this needs a migration that rewrites those files first.
        """
        if self.inode is None:
            return st is not None and stat.S_ISREG(st.st_mode) and st.st_size == self.size
        return self.describes(st)


# Read on every request (each manifest parse): computed once.
_FIELDS = frozenset(f.name for f in fields(Manifest))


@dataclass(frozen=True)
class PutResult:
    """The outcome of :meth:`Store.put`: ``created``, ``updated`` or ``exists``."""

    manifest: Manifest
    status: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse(raw: bytes) -> Manifest | None:
    """A manifest from its file's bytes, or ``None`` if they are not one."""
    try:
        return Manifest.from_json(raw)
    except (ValueError, TypeError):
        return None
