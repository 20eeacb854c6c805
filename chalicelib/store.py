"""The shared store on EFS (or a local folder): atomic, durable, locked.

Layout under the root::

    models/<name>              objects, exactly at their documented efsPath
    inputs/<name>
    outputs/<fileId>.result
    .meta/<kind>/<name>.json   manifest of each object
    .meta/ids/<fileId>.json    fileId -> object
    .locks/<kind>/<name>.lock  one record-lock file per name

Write protocol for one name (see ``locks`` for the two lock ranges):

1. Take WRITER. Finish any commit a crashed writer left half done and
   remove temp files dead writers left behind (only WRITER's holder can own
   a temp file of this name, so any other is debris).
2. Stream into ``.<name>.<hex>.tmp`` beside the target, hashing in the same
   pass; fsync.
3. Same sha256 as the current manifest: drop the temp, answer ``exists``.
4. Take COMMIT. Write the new manifest as ``<name>.pending`` (the intent,
   naming the temp file), rename the temp over the object, rename the
   pending manifest over the manifest, fsync both directories.

A crash between the two renames leaves ``.pending``; whoever next holds
COMMIT exclusively rolls forward (temp gone: the object was swapped) or
back (temp still there). Readers hold COMMIT shared only while they read
the manifest and open the object, so they always get a matching pair.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import re
import stat
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, BinaryIO, Iterable, Iterator

from chalicelib import locks
from chalicelib.config import get_settings
from chalicelib.errors import (
    EfsWriteFailed,
    FileTooLarge,
    S3ObjectChanged,
    ServiceError,
    StoreCorrupt,
)
from chalicelib.names import KINDS, ObjectRef, is_valid_name
from chalicelib.overlap import ThreadedSha256, WriteBehind

META_DIR = ".meta"
LOCK_DIR = ".locks"
IDS = "ids"
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<token>[0-9a-f]{32})\.tmp\Z")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


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

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class PutResult:
    """The outcome of :meth:`Store.put`: ``created``, ``updated`` or ``exists``."""

    manifest: Manifest
    status: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _temp_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex}.tmp"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Store:
    """One store rooted at a directory. Cheap to build; holds no descriptors."""

    def __init__(self, root: str, *, lock_timeout: float = 120.0) -> None:
        self.root = os.path.abspath(root)
        self.lock_timeout = lock_timeout

    # -- paths -------------------------------------------------------------
    def _dir(self, *parts: str) -> str:
        """A store directory, created on demand, never reached through a
        symlink planted inside the store."""
        path = self.root
        os.makedirs(path, exist_ok=True)
        for part in parts:
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise EfsWriteFailed("open", "Store layout is damaged: a store directory is not a directory")
        return path

    def path(self, ref: ObjectRef) -> str:
        """Where the object lives (its documented ``efsPath``)."""
        return os.path.join(self.root, ref.kind, ref.name)

    def _data_dir(self, ref: ObjectRef) -> str:
        return self._dir(ref.kind)

    def _meta_dir(self, kind: str) -> str:
        return self._dir(META_DIR, kind)

    def _manifest_path(self, ref: ObjectRef) -> str:
        return os.path.join(self._meta_dir(ref.kind), ref.name + ".json")

    def _pending_path(self, ref: ObjectRef) -> str:
        return os.path.join(self._meta_dir(ref.kind), ref.name + ".pending")

    def _lock_path(self, ref: ObjectRef) -> str:
        return os.path.join(self._dir(LOCK_DIR, ref.kind), ref.name + ".lock")

    # -- locking -----------------------------------------------------------
    @contextmanager
    def _lock(self, ref: ObjectRef, byte: int, shared: bool = False) -> Iterator[None]:
        with ExitStack() as stack:
            try:
                path = self._lock_path(ref)
                if byte == locks.COMMIT:
                    # Through the turnstile: readers hold COMMIT shared almost
                    # constantly under load, and a committer polling for it
                    # alone was starved (timed out) by them.
                    with locks.record_lock(path, locks.TURNSTILE, shared=shared, timeout=self.lock_timeout):
                        stack.enter_context(locks.record_lock(path, byte, shared=shared, timeout=self.lock_timeout))
                else:
                    stack.enter_context(locks.record_lock(path, byte, shared=shared, timeout=self.lock_timeout))
            except locks.LockTimeout:
                raise EfsWriteFailed("lock", "Timed out waiting for another writer of this name") from None
            except OSError as exc:
                raise EfsWriteFailed("lock", f"Failed to lock file on EFS ({_reason(exc)})") from None
            yield

    # -- reading -----------------------------------------------------------
    def manifest(self, ref: ObjectRef) -> Manifest | None:
        """The object's current manifest, or ``None``. Lock-free and cheap:
        manifests are replaced atomically, so this is always a whole one."""
        # Read path of every request: open beneath the root (no symlink on
        # the way) instead of _manifest_path, whose mkdir/lstat per level
        # cost more than the whole read.
        path = os.path.join(self.root, META_DIR, ref.kind, ref.name + ".json")
        try:
            fd = _open_beneath(self.root, path, os.O_RDONLY | _NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
        try:
            with os.fdopen(fd, "rb") as f:
                return Manifest.from_json(f.read())
        except (ValueError, TypeError):
            return None

    @contextmanager
    def open(self, ref: ObjectRef) -> Iterator[tuple[Manifest, BinaryIO]]:
        """Open an object together with its matching manifest.

        Raises ``FileNotFoundError`` when there is no complete object. The
        file stays readable even if a writer replaces it meanwhile.
        """
        for _ in range(2):
            with self._lock(ref, locks.COMMIT, shared=True):
                if not os.path.exists(self._pending_path(ref)):
                    manifest = self.manifest(ref)
                    if manifest is None:
                        raise FileNotFoundError(ref.key)
                    f = self._open_regular(self.path(ref))
                    break
            # A writer died mid-commit: finish its commit, then read again.
            with self._lock(ref, locks.COMMIT):
                self._finish_pending(ref)
        else:  # pragma: no cover - two crashes within one read
            raise FileNotFoundError(ref.key)
        try:
            yield manifest, f
        finally:
            f.close()

    def _open_regular(self, path: str) -> BinaryIO:
        """Open a regular file without following a symlink planted in the store."""
        try:
            fd = _open_beneath(self.root, path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise FileNotFoundError(path) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(path)
        return os.fdopen(fd, "rb")

    def read_bytes(self, ref: ObjectRef, *, verify: bool = True) -> tuple[Manifest, bytes]:
        """Read a whole (small) object, checked against its manifest."""
        with self.open(ref) as (manifest, f):
            data = f.read()
        if verify and (len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256):
            raise StoreCorrupt(f"Stored object '{ref.key}' does not match its manifest")
        return manifest, data

    def list(self, kind: str) -> list[Manifest]:
        """Manifests of every complete object of one kind, by name."""
        out: list[Manifest] = []
        try:
            names = sorted(_list_real_dir(self.root, os.path.join(self.root, kind)))
        except FileNotFoundError:
            return out
        for name in names:
            if is_valid_name(name):
                m = self.manifest(ObjectRef(kind, name))
                if m is not None:
                    out.append(m)
        return out

    def lookup_file_id(self, file_id: str) -> ObjectRef | None:
        """The object a fileId was issued for, if any."""
        if not is_valid_name(file_id):
            return None
        try:
            with self._open_regular(os.path.join(self.root, META_DIR, IDS, file_id + ".json")) as f:
                doc = json.loads(f.read())
            ref = ObjectRef(doc["kind"], doc["name"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if ref.kind not in KINDS or not is_valid_name(ref.name):
            return None
        return ref

    # -- writing -----------------------------------------------------------
    def put(
        self,
        ref: ObjectRef,
        chunks: Iterable[bytes],
        *,
        source: str,
        etag: str | None = None,
        max_bytes: int | None = None,
        expected_size: int | None = None,
    ) -> PutResult:
        """Store the bytes of ``chunks`` under ``ref``, atomically and durably.

        Same content as the current version: ``exists`` (nothing rewritten).
        New content: ``updated`` with the next version; new name: ``created``.
        ``expected_size`` rejects a short or long stream (truncated download).
        Any failure leaves the previous version (or nothing) in place.
        Long streams are hashed on a helper thread: a chunk's buffer must not
        be reused once it was yielded (``bytes`` never are).
        """
        with self._lock(ref, locks.WRITER):
            with self._lock(ref, locks.COMMIT):
                self._finish_pending(ref)
            self._sweep_temps(ref)
            current = self.manifest(ref)
            data_dir = self._data_dir(ref)
            tmp_name = _temp_name(ref.name)
            tmp_path = os.path.join(data_dir, tmp_name)
            try:
                size, digest = self._write_temp(tmp_path, chunks, max_bytes)
                if expected_size is not None and size != expected_size:
                    raise S3ObjectChanged(
                        f"Copied {size} bytes but the source announced {expected_size}; nothing was stored"
                    )
                if current is not None and current.sha256 == digest and current.size == size \
                        and self._object_intact(ref, current):
                    _unlink_quietly(tmp_path)
                    return PutResult(current, "exists")
                now = _now()
                if current is None:
                    manifest = Manifest(
                        fileId=str(uuid.uuid4()), key=ref.key, size=size, sha256=digest,
                        version=1, source=source, etag=etag, created=now, updated=now,
                    )
                    status = "created"
                else:
                    manifest = replace(
                        current, size=size, sha256=digest, version=current.version + 1,
                        source=source, etag=etag, updated=now,
                    )
                    status = "updated"
                # Indexed before the commit (new names too): an index entry for
                # an object that never landed is harmless, a missing one is not.
                self._record_file_id(manifest.fileId, ref)
                with self._lock(ref, locks.COMMIT):
                    self._commit(ref, tmp_name, manifest)
            except BaseException:
                _unlink_quietly(tmp_path)
                raise
        return PutResult(manifest, status)

    def put_bytes(self, ref: ObjectRef, data: bytes, *, source: str) -> PutResult:
        """:meth:`put` for a small in-memory payload, skipping the write
        entirely when the stored object already has these bytes."""
        current = self.manifest(ref)
        if current is not None and current.size == len(data) \
                and current.sha256 == hashlib.sha256(data).hexdigest() \
                and self._object_intact(ref, current):
            return PutResult(current, "exists")
        return self.put(ref, [data], source=source)

    def _object_intact(self, ref: ObjectRef, manifest: Manifest) -> bool:
        try:
            st = os.lstat(self.path(ref))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == manifest.size

    def _write_temp(self, tmp_path: str, chunks: Iterable[bytes], max_bytes: int | None) -> tuple[int, str]:
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        except OSError as exc:
            raise EfsWriteFailed("open", f"Failed to create file on EFS ({_reason(exc)})") from None
        # Same single pass, overlapped: sha256 on a helper thread and early
        # write-back while the next chunk arrives (see chalicelib.overlap).
        hasher = ThreadedSha256()
        write_behind = WriteBehind(fd)
        size = 0
        try:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise FileTooLarge(max_bytes)
                hasher.update(chunk)
                try:
                    _write_all(fd, chunk)
                except OSError as exc:
                    raise EfsWriteFailed("write", f"Failed to write file to EFS ({_reason(exc)})") from None
                write_behind.wrote(len(chunk))
            try:
                os.fsync(fd)
            except OSError as exc:
                raise EfsWriteFailed("fsync", f"Failed to flush file to EFS ({_reason(exc)})") from None
            digest = hasher.hexdigest()
        finally:
            hasher.close()
            try:
                os.close(fd)
            except OSError:
                pass  # NFS may report a deferred error here; fsync above already surfaced it
        return size, digest

    def _commit(self, ref: ObjectRef, tmp_name: str, manifest: Manifest) -> None:
        """Swap in the object and its manifest. Caller holds WRITER and COMMIT."""
        meta_dir = self._meta_dir(ref.kind)
        data_dir = self._data_dir(ref)
        pending = self._pending_path(ref)
        intent = json.dumps({"temp": tmp_name, "manifest": json.loads(manifest.to_json())}).encode()
        self._atomic_write(meta_dir, pending, intent, stage="manifest")
        try:
            os.rename(os.path.join(data_dir, tmp_name), self.path(ref))
        except BaseException as exc:
            # No swap: withdraw the intent *before* the caller deletes the
            # temp file, or recovery would roll a stale intent forward.
            _unlink_quietly(pending)
            if isinstance(exc, OSError):
                raise EfsWriteFailed("rename", f"Failed to publish file on EFS ({_reason(exc)})") from None
            raise
        # Swapped: from here on the intent may only roll forward.
        try:
            _fsync_dir(data_dir)
        except OSError as exc:
            # Publishing the manifest before the swap is durable could pair a
            # new manifest with old bytes after a crash; leave the intent for
            # recovery, which judges by what is actually on disk.
            raise EfsWriteFailed("fsync", f"Failed to flush directory on EFS ({_reason(exc)})") from None
        self._publish_manifest(ref, pending)

    def _publish_manifest(self, ref: ObjectRef, pending: str) -> None:
        with self._open_regular(pending) as f:
            manifest = Manifest(**json.loads(f.read())["manifest"])
        meta_dir = self._meta_dir(ref.kind)
        try:
            self._atomic_write(meta_dir, self._manifest_path(ref), manifest.to_json(), stage="manifest")
            os.unlink(pending)
            _fsync_dir(meta_dir)
        except OSError as exc:
            raise EfsWriteFailed("manifest", f"Failed to write manifest on EFS ({_reason(exc)})") from None

    def _finish_pending(self, ref: ObjectRef) -> None:
        """Roll a crashed writer's commit forward or back. Caller holds COMMIT."""
        pending = self._pending_path(ref)
        try:
            with self._open_regular(pending) as f:
                intent = json.loads(f.read())
            tmp_name = intent["temp"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            # The intent itself is torn: it was never acted on.
            _unlink_quietly(pending)
            return
        tmp_path = os.path.join(self._data_dir(ref), os.path.basename(str(tmp_name)))
        if os.path.lexists(tmp_path):
            # Object never swapped: drop the intent first, so that a crash
            # here leaves only a stray temp file, never a wrong roll-forward.
            os.unlink(pending)
            _fsync_dir(self._meta_dir(ref.kind))
            _unlink_quietly(tmp_path)
        else:
            self._publish_manifest(ref, pending)

    def _temps(self, ref: ObjectRef) -> builtins.list[str]:  # plain `list` here is the method above
        """This name's temp files: data temps carry the name, manifest and
        intent temps in .meta carry ``<name>.json`` / ``<name>.pending``."""
        data_dir, meta_dir = os.path.join(self.root, ref.kind), os.path.join(self.root, META_DIR, ref.kind)
        owners = {data_dir: {ref.name}, meta_dir: {ref.name + ".json", ref.name + ".pending"}}
        return [os.path.join(d, e) for d, names in owners.items() for e in _list_real_dir(self.root, d)
                if (m := _TEMP_RE.match(e)) and m.group("name") in names]

    def _sweep_temps(self, ref: ObjectRef) -> None:
        """Remove this name's temp files left by dead writers. Caller holds WRITER."""
        for path in self._temps(ref):
            _unlink_quietly(path)

    def reclaim(self) -> int:
        """Finish dead writers' commits and sweep their temp files, for every
        name whose lock is free.

        Returns how many temp files were removed. Names being written now are
        skipped (their WRITER is held), so this is safe to run at any time.
        """
        removed = 0
        for kind in KINDS:
            names = {m.group("name") for e in _list_real_dir(self.root, os.path.join(self.root, kind))
                     if (m := _TEMP_RE.match(e))}
            for entry in _list_real_dir(self.root, os.path.join(self.root, META_DIR, kind)):
                m = _TEMP_RE.match(entry)
                owner = m.group("name") if m else entry
                for suffix in (".json", ".pending"):
                    # Temps of manifests/intents, and intents left by a crash.
                    if owner.endswith(suffix) and (m or suffix == ".pending"):
                        names.add(owner[:-len(suffix)])
            for name in sorted(names):
                if not is_valid_name(name):
                    continue
                ref = ObjectRef(kind, name)
                before = len(self._temps(ref))
                try:
                    with self._lock(ref, locks.WRITER):
                        with self._lock(ref, locks.COMMIT):
                            self._finish_pending(ref)
                        self._sweep_temps(ref)
                except EfsWriteFailed:
                    continue
                removed += before - len(self._temps(ref))
        return removed

    def _atomic_write(self, directory: str, path: str, data: bytes, *, stage: str,
                      tmp: str | None = None) -> None:
        tmp = tmp or os.path.join(directory, _temp_name(os.path.basename(path)))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            _fsync_dir(directory)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise EfsWriteFailed(stage, f"Failed to write {stage} on EFS ({_reason(exc)})") from None

    def _record_file_id(self, file_id: str, ref: ObjectRef) -> None:
        directory = self._dir(META_DIR, IDS)
        doc = json.dumps({"kind": ref.kind, "name": ref.name}).encode()
        # The temp is named after the object, beside its manifest, so that the
        # next writer of this name (or reclaim) sweeps it after a crash.
        tmp = os.path.join(self._meta_dir(ref.kind), _temp_name(ref.name + ".json"))
        self._atomic_write(directory, os.path.join(directory, file_id + ".json"), doc, stage="manifest", tmp=tmp)

    # -- health ------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Whether the root exists, is a mount point, and takes a durable write."""
        report = {"mounted": os.path.ismount(self.root), "exists": os.path.isdir(self.root), "writable": False}
        if report["exists"]:
            try:
                directory = self._dir(META_DIR)
                self._atomic_write(directory, os.path.join(directory, "health-probe"), b"ok", stage="health")
                report["writable"] = True
            except (ServiceError, OSError):
                pass
        return report


def _open_beneath(root: str, path: str, flags: int) -> int:
    """Open ``path`` inside ``root`` following no symlink below ``root``: not
    the file, nor any directory on the way (O_NOFOLLOW guards only the last
    component)."""
    parts = os.path.relpath(path, root).split(os.sep)
    if parts[0] == os.pardir:
        raise FileNotFoundError(path)
    dfd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=dfd)
    finally:
        os.close(dfd)


def _list_real_dir(root: str, path: str) -> list[str]:
    """Entries of a store directory; none if it is missing or reached through
    a symlink (debris sweeps must never list, or unlink, outside the root)."""
    try:
        fd = _open_beneath(root, path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return []
        raise
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    """An OSError's reason without its filename (paths never reach clients)."""
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


@lru_cache(maxsize=1)
def get_store() -> Store:
    """The process's store, built from settings on first use."""
    settings = get_settings()
    return Store(settings.efs_root, lock_timeout=settings.lock_timeout_seconds)
