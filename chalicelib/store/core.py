"""The shared store on EFS (or a local folder): atomic, durable, locked.

Layout under the root::

    models/<name>              objects, exactly at their documented efsPath
    inputs/<name>
    outputs/<fileId>.result
    .meta/<kind>/<name>.json   manifest of each object
    .meta/ids/<fileId>.json    fileId -> object (a symlink naming it)
    .meta/versions/models/<name>.v<n>   kept older versions (hard links)
    .locks/<kind>.lock         record locks, one slot per name

``commit`` describes the write protocol and its recovery, ``locks`` the
locks, ``fs`` how paths are resolved, ``manifest`` what a manifest records.

Reads take no lock: a reader reads the manifest, opens the object and
compares the object's identity (``fstat``) with the one the manifest
recorded at commit. Equal, the pair is consistent; otherwise a commit is in
flight or a writer died, and the reader falls back to the locked path,
which waits for the commit or finishes the dead writer's.

Models keep their last ``versions_kept`` versions (``MODEL_VERSIONS_KEPT``):
``docs/design/versions.md`` explains the layout, the rollback and their
crash safety.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import json
import mmap
import os
import stat
import time
import uuid
from collections import defaultdict
from collections.abc import Buffer
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import replace
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from chalicelib.errors import DeadlineExceeded, EfsWriteFailed, ServiceError, StoreCorrupt
from chalicelib.names import INGEST_KINDS, INPUTS, KINDS, MODELS, ObjectRef, is_valid_name
from chalicelib.store import commit, fs, locks, status
from chalicelib.store.commit import IDS, LOCKS, META, TEMP_RE, VERSION_RE, version_name, versions_dir
from chalicelib.store.errors import SizeMismatch, VersionNotKept
from chalicelib.store.manifest import Manifest, PutResult, now, parse

# Objects whose fileId clients are handed (ingest answers). Outputs are
# addressed by the request's fileId and need no index entry.
INDEXED_KINDS = (MODELS, INPUTS)
# Kinds that keep older versions (inputs and outputs keep only the current one).
VERSIONED_KINDS = (MODELS,)
# One fcntl call each way takes a small write's three bytes together.
_SMALL_BYTES = 1024 * 1024
_WRITE_ALL = (locks.WRITER, locks.TURNSTILE, locks.COMMIT)
_COMMIT = (locks.TURNSTILE, locks.COMMIT)

Describe = Callable[[Buffer], dict[str, Any]]
"""Validates an object's bytes before they are committed and returns fields
for its manifest (a model's ``signature`` and ``format``); raises to refuse them."""
_UNDESCRIBED: dict[str, Any] = {"signature": None, "format": None, "scan": None}


class Store:
    """One store rooted at a directory. Cheap to build; keeps its directory handles."""

    def __init__(
        self,
        root: str,
        *,
        lock_timeout: float = 120.0,
        dir_sync: fs.DirSync | None = None,
        versions_kept: int = 3,
    ) -> None:
        self.root = os.path.abspath(root)
        self.lock_timeout = lock_timeout
        self.versions_kept = max(1, versions_kept)
        self.dir_sync = dir_sync or fs.DirSync()
        self._dirs = fs.Dirs(self.root, sync_dirs=self.dir_sync.needed(self.root))
        self.status = status.StatusRecords(self._dirs)  # pending/failed ingests

    # -- paths (no side effects) ---------------------------------------------
    def path(self, ref: ObjectRef) -> str:
        """Where the object lives (its documented ``efsPath``)."""
        return os.path.join(self.root, ref.kind, ref.name)

    def _lock_file(self, kind: str) -> str:
        return self._dirs.path(LOCKS, kind + ".lock")

    # -- locking -------------------------------------------------------------
    def _open_lock_file(self, path: str) -> int:
        self._dirs.fd(LOCKS, create=True)  # a real directory of the store, created once
        return os.open(path, os.O_RDWR | os.O_CREAT | fs.NOFOLLOW, 0o644)

    @contextmanager
    def _locked(
        self, ref: ObjectRef, order: Sequence[int], *, shared: bool = False, timeout: float | None = None
    ) -> Iterator[None]:
        with ExitStack() as stack:
            try:
                stack.enter_context(
                    locks.hold(
                        self._lock_file(ref.kind),
                        self._open_lock_file,
                        ref.name,
                        order,
                        shared=shared,
                        timeout=self.lock_timeout if timeout is None else timeout,
                    )
                )
            except locks.LockTimeout as exc:
                if exc.by_deadline:
                    raise DeadlineExceeded("lock") from None
                raise EfsWriteFailed("lock", "Timed out waiting for another writer of this name") from None
            except OSError as exc:
                raise EfsWriteFailed("lock", f"Failed to lock file on EFS ({fs.reason(exc)})") from None
            yield

    @contextmanager
    def _writer_lock(self, ref: ObjectRef, timeout: float | None = None) -> Iterator[None]:
        """Hold ``ref``'s WRITER lock (what a writer holds for a whole write)."""
        with self._locked(ref, (locks.WRITER,), timeout=timeout):
            yield

    def _has_pending(self, ref: ObjectRef) -> bool:
        return self._dirs.lstat((META, ref.kind), commit.pending_name(ref.name)) is not None

    # -- reading -------------------------------------------------------------
    def manifest(self, ref: ObjectRef) -> Manifest | None:
        """The object's current manifest, or ``None``. Lock-free: manifests are
        replaced atomically, so this is always a whole one."""
        try:
            fd = self._dirs.open((META, ref.kind), commit.manifest_name(ref.name))
        except FileNotFoundError:
            return None
        try:
            raw = fs.read_all(fd)
        finally:
            os.close(fd)
        return parse(raw)

    @contextmanager
    def open(self, ref: ObjectRef, version: int | None = None) -> Iterator[tuple[Manifest, BinaryIO]]:
        """Open an object (its current version, or kept ``version``) together
        with its matching manifest.

        Raises ``FileNotFoundError`` when there is no complete object, and
        :class:`VersionNotKept` for a version the name does not keep. The
        file stays readable even if a writer replaces it meanwhile.
        """
        manifest, f = self._open_pair(ref) if version is None else self._open_version(ref, version)
        try:
            yield manifest, f
        finally:
            f.close()

    def _open_pair(self, ref: ObjectRef) -> tuple[Manifest, BinaryIO]:
        manifest = self.manifest(ref)
        if manifest is not None:
            try:
                fd: int | None = self._dirs.open((ref.kind,), ref.name)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                if manifest.describes(os.fstat(fd)):
                    return manifest, os.fdopen(fd, "rb")
                os.close(fd)
        elif not self._has_pending(ref):
            raise FileNotFoundError(ref.key)
        # A commit in flight, a dead writer's intent, or an older manifest.
        for _ in range(2):
            with self._locked(ref, _COMMIT, shared=True):
                if not self._has_pending(ref):
                    manifest = self.manifest(ref)
                    if manifest is None:
                        raise FileNotFoundError(ref.key)
                    return manifest, self._open_regular(ref)
            # A writer died mid-commit: finish its commit, then read again.
            with self._locked(ref, _COMMIT):
                commit.finish_pending(self._dirs, ref)
        raise FileNotFoundError(ref.key)  # pragma: no cover - two crashes within one read

    def version(self, ref: ObjectRef, version: int | None) -> Manifest:
        """The manifest of kept ``version`` of ``ref`` (``None``: the current one). Lock-free.

        Raises ``FileNotFoundError`` (no such name) or :class:`VersionNotKept`.
        """
        current = self.manifest(ref)
        if current is None:
            raise FileNotFoundError(ref.key)
        if version is None:
            return current
        kept = current.kept()
        if version not in kept:
            raise VersionNotKept(version, sorted(kept))
        return kept[version]

    def _open_version(self, ref: ObjectRef, version: int) -> tuple[Manifest, BinaryIO]:
        """A pinned version: the current object if it is that version, else its
        version file, checked against the identity its manifest recorded."""
        current = self.manifest(ref)
        if current is None and not self._has_pending(ref):
            raise FileNotFoundError(ref.key)
        if current is not None and current.version == version:
            manifest, f = self._open_pair(ref)  # waits for or finishes a commit itself
            if manifest.version == version:
                return manifest, f
            f.close()
        elif current is not None:
            found = self._open_kept(ref, current, version)
            if found is not None:
                return found
        # Raced a commit (a prune, a rollback) or found a dead writer's intent:
        # wait for it or finish it, then answer from what the store holds now.
        with self._locked(ref, _COMMIT):
            commit.finish_pending(self._dirs, ref)
            current = self.manifest(ref)
            if current is None:
                raise FileNotFoundError(ref.key)
            if current.version == version:
                return current, self._open_regular(ref)
            found = self._open_kept(ref, current, version)
        if found is None:
            raise StoreCorrupt(f"Stored version {version} of '{ref.key}' does not match its manifest")
        return found

    def _open_kept(self, ref: ObjectRef, current: Manifest, version: int) -> tuple[Manifest, BinaryIO] | None:
        """Kept, non-current ``version`` and its file, if the file is the one it
        was committed with (``None``: missing or another inode)."""
        kept = current.kept()
        if version not in kept:
            raise VersionNotKept(version, sorted(kept))
        wanted = kept[version]
        try:
            fd = self._dirs.open(versions_dir(ref.kind), version_name(ref.name, version))
        except FileNotFoundError:
            return None
        if wanted.describes(os.fstat(fd)):
            return wanted, os.fdopen(fd, "rb")
        os.close(fd)
        return None

    def _open_regular(self, ref: ObjectRef) -> BinaryIO:
        """Open an object without following a symlink planted in the store."""
        fd = self._dirs.open((ref.kind,), ref.name)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(ref.key)
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
        out = []
        for name in sorted(self._dirs.listdir((kind,))):
            if is_valid_name(name):
                m = self.manifest(ObjectRef(kind, name))
                if m is not None:
                    out.append(m)
        return out

    def names(self, kind: str) -> builtins.list[str]:
        """Names of one kind that have a manifest, sorted by code point, from
        one directory listing (no manifest is read: the listing is the index
        a page of ``GET /models`` starts from). Not validated here (the
        caller checks the few it shows: 100,000 checks would take seconds)."""
        suffix = commit.manifest_name("")
        return sorted(e[: -len(suffix)] for e in self._dirs.listdir((META, kind)) if e.endswith(suffix) and e[0] != ".")

    def lookup_file_id(self, file_id: str) -> ObjectRef | None:
        """The object a fileId was issued for, if any."""
        if not is_valid_name(file_id):
            return None
        entry = file_id + ".json"
        try:
            text = self._dirs.readlink((META, IDS), entry)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                return None
            legacy = self._legacy_index(entry)  # a regular file: the first store's index
            if legacy is None:
                return None
            text = legacy
        kind, _, name = text.partition("/")
        if kind not in KINDS or not is_valid_name(name):
            return None
        ref = ObjectRef(kind, name)
        manifest = self.manifest(ref)
        if manifest is not None and manifest.fileId != file_id:
            # A stale entry: its object was deleted (and the name maybe
            # re-created with a new fileId). The old fileId names nothing.
            return None
        return ref

    def _legacy_index(self, entry: str) -> str | None:
        try:
            fd = self._dirs.open((META, IDS), entry)
            try:
                doc = json.loads(fs.read_all(fd))
            finally:
                os.close(fd)
            return f"{doc['kind']}/{doc['name']}"
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # -- writing -------------------------------------------------------------
    def put(
        self,
        ref: ObjectRef,
        chunks: Iterable[bytes | memoryview],
        *,
        source: str,
        etag: str | None = None,
        max_bytes: int | None = None,
        expected_size: int | None = None,
        describe: Describe | None = None,
    ) -> PutResult:
        """Store the bytes of ``chunks`` under ``ref``, atomically and durably.

        Same content as the current version (and the object still the one
        its manifest names): ``exists``, nothing rewritten. New content, or
        an object that no longer matches its manifest: ``updated`` with the
        next version; new name: ``created``. ``expected_size`` rejects a
        short or long stream (:class:`SizeMismatch`). Any failure leaves the
        previous version (or nothing) in place. Each chunk is hashed and
        written before the next is asked for, and not kept. With ``etag`` and
        ``expected_size``: if the current version is already that object
        (:meth:`unchanged`, checked under the lock, so a duplicate that waited
        for a concurrent copy of it), ``exists`` without taking a chunk.

        ``describe``, if given, sees new bytes once they are written and
        before they are committed (a read-only mapping of the temp file, or
        the in-memory payload): what it returns goes into the manifest, and
        whatever it raises refuses the bytes, leaving the previous version.
        """
        small = isinstance(chunks, (list, tuple)) and sum(map(len, chunks)) <= _SMALL_BYTES
        return self._put(
            ref,
            chunks,
            source=source,
            etag=etag,
            max_bytes=max_bytes,
            expected_size=expected_size,
            small=small,
            describe=describe,
        )

    def unchanged(self, ref: ObjectRef, manifest: Manifest, *, source: str, etag: str, size: int) -> bool:
        """Whether ``manifest`` (the current one of ``ref``) already holds the
        S3 object ``source`` at ``etag``, intact: nothing to copy. An ETag
        names one content of one key; a source without one (inline) never matches."""
        return (
            manifest.source == source and manifest.etag == etag and manifest.size == size and self.intact(ref, manifest)
        )

    def intact(self, ref: ObjectRef, manifest: Manifest) -> bool:
        """Whether the object on disk is still the one ``manifest`` was committed
        with (from its identity: no read, no hash). A manifest from the first
        store, without identity, is judged by size."""
        return manifest.plausibly_describes(self._dirs.lstat((ref.kind,), ref.name))

    def put_bytes(
        self,
        ref: ObjectRef,
        data: bytes,
        *,
        source: str,
        max_bytes: int | None = None,
        describe: Describe | None = None,
    ) -> PutResult:
        """:meth:`put` for a small in-memory payload, answering ``exists``
        without a lock or a write when the stored object already has these
        bytes (checked from the manifest and the object's identity)."""
        current = self.manifest(ref)
        if (
            current is not None
            and current.size == len(data)
            and current.sha256 == hashlib.sha256(data).hexdigest()
            and self.intact(ref, current)
        ):
            return PutResult(current, "exists")
        return self._put(
            ref, [data], source=source, max_bytes=max_bytes, small=len(data) <= _SMALL_BYTES, describe=describe
        )

    def _put(
        self,
        ref: ObjectRef,
        chunks: Iterable[bytes | memoryview],
        *,
        source: str,
        etag: str | None = None,
        max_bytes: int | None = None,
        expected_size: int | None = None,
        small: bool,
        describe: Describe | None = None,
    ) -> PutResult:
        # A small write takes COMMIT with WRITER (one lock call): it holds
        # COMMIT only for as long as a large one holds it for its swap.
        commit_lock = nullcontext if small else (lambda: self._locked(ref, _COMMIT))
        with self._locked(ref, _WRITE_ALL if small else (locks.WRITER,)):
            if self._has_pending(ref):
                with commit_lock():
                    commit.finish_pending(self._dirs, ref)
            current = self.manifest(ref)
            if (
                current is not None
                and etag is not None
                and expected_size is not None
                and self.unchanged(ref, current, source=source, etag=etag, size=expected_size)
            ):
                return PutResult(current, "exists")  # the same object: not one byte read or written
            size, digest, st = commit.write_temp(self._dirs, ref, chunks, max_bytes)
            try:
                if expected_size is not None and size != expected_size:
                    raise SizeMismatch(size, expected_size)
                if (
                    current is not None
                    and current.sha256 == digest
                    and current.size == size
                    and self.intact(ref, current)
                ):
                    self._dirs.unlink_quietly((ref.kind,), commit.data_temp(ref.name))
                    return PutResult(current, "exists")
                described = self._describe(ref, chunks, describe)
                stamp = now()
                if current is None:
                    manifest = Manifest(
                        fileId=str(uuid.uuid4()),
                        key=ref.key,
                        size=size,
                        sha256=digest,
                        version=1,
                        source=source,
                        etag=etag,
                        created=stamp,
                        updated=stamp,
                        inode=st.st_ino,
                        mtimeNs=st.st_mtime_ns,
                        **described,
                    )
                    status = "created"
                    if ref.kind in INDEXED_KINDS:
                        # Indexed before the commit: an index entry for an
                        # object that never landed is harmless, a missing one is not.
                        commit.record_file_id(self._dirs, manifest.fileId, ref)
                else:
                    # New content, or the same content but the object no longer
                    # matches its manifest (tampered, or a lost rename reply): rewritten.
                    previous, dropped = self._keep_previous(ref, current)
                    manifest = replace(
                        current,
                        size=size,
                        sha256=digest,
                        version=current.latest_version + 1,  # never a number used before
                        source=source,
                        etag=etag,
                        updated=stamp,
                        inode=st.st_ino,
                        mtimeNs=st.st_mtime_ns,
                        previous=previous,
                        latest=None,
                        versionCreated=stamp if ref.kind in VERSIONED_KINDS else None,
                        **described,
                    )
                    status = "updated"
                with commit_lock():
                    self._commit(ref, manifest)
                if status == "updated":
                    commit.drop_versions(self._dirs, ref, dropped)
            except BaseException:
                self._dirs.unlink_quietly((ref.kind,), commit.data_temp(ref.name))
                raise
        return PutResult(manifest, status)

    def _keep_previous(
        self, ref: ObjectRef, current: Manifest, exclude: int | None = None
    ) -> tuple[builtins.list[dict[str, object]] | None, builtins.list[int]]:
        """What the next commit keeps of ``current``'s versions: (its manifest's
        ``previous``, version files to unlink once it is published).

        Keeps the newest ``versions_kept - 1`` of ``current``'s kept versions
        besides the incoming one (``exclude``: a rollback's target, which
        becomes current); the current object is linked as a version file
        first if it stays kept and has none. A current object that no longer
        matches its manifest is not kept: its bytes are not what was committed.
        Caller holds WRITER.
        """
        if ref.kind not in VERSIONED_KINDS:
            return None, []
        candidates = current.kept()
        # Only a rolled-back-to current has a version file (``latest`` set); one a
        # crash left beside another current is the sweep's (no lstat here: a
        # missing directory would cost a lookup on every replace).
        has_file = current.latest is not None
        if not self.intact(ref, current):
            del candidates[current.version]
        if exclude is not None:
            candidates.pop(exclude, None)
        numbers = sorted(candidates, reverse=True)[: self.versions_kept - 1]
        if current.version in numbers:
            commit.keep_version(self._dirs, ref, current)
        listed = [n for n in current.kept() if n != current.version or has_file]
        dropped = [n for n in listed if n not in numbers and n != exclude]
        return [candidates[n].alone().to_dict() for n in numbers] or None, dropped

    def _describe(
        self, ref: ObjectRef, chunks: Iterable[bytes | memoryview], describe: Describe | None
    ) -> dict[str, Any]:
        """``describe`` over the bytes about to be committed: the in-memory
        payload, or a read-only mapping of the temp file just written (its
        pages are still in the page cache, and a walk of a model's structure
        touches only the pages it reads, so nothing is fetched twice)."""
        if describe is None:
            return _UNDESCRIBED  # an older description must not outlive its bytes
        if isinstance(chunks, (list, tuple)) and len(chunks) == 1:
            return describe(chunks[0])
        try:
            fd = self._dirs.open((ref.kind,), commit.data_temp(ref.name))
        except OSError as exc:
            raise EfsWriteFailed("open", f"Failed to read back file on EFS ({fs.reason(exc)})") from None
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return describe(b"")
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapping:
                return describe(mapping)
        finally:
            os.close(fd)

    def _commit(self, ref: ObjectRef, manifest: Manifest) -> None:
        """Intent, swap, publish (see ``commit``). Caller holds WRITER and COMMIT."""
        commit.write_intent(self._dirs, ref, manifest)
        commit.swap(self._dirs, ref)
        self._publish(ref)

    def _publish(self, ref: ObjectRef) -> None:
        commit.publish(self._dirs, ref)

    # -- versions ------------------------------------------------------------
    def rollback(self, ref: ObjectRef, version: int) -> tuple[PutResult, int]:
        """Make kept ``version`` of ``ref`` current again, without copying a byte.

        Returns (``rolledBack`` with the new current manifest, or ``current``
        if it is already; the version that was current before). The data temp
        becomes a second name of the version's inode (``commit.stage_version``),
        then the commit is the same intent, swap and publish as an ingest's, so
        recovery after a crash at any step is the same too. The kept set stays (the old current joins ``previous``);
        numbers stay (the next ingest is ``latest + 1``). Raises
        ``FileNotFoundError`` (no such name), :class:`VersionNotKept`, or
        ``StoreCorrupt`` if the version's file is not the one committed.
        EFS round trips: docs/design/versions.md.
        """
        with self._locked(ref, _WRITE_ALL):
            if self._has_pending(ref):
                commit.finish_pending(self._dirs, ref)
            current = self.manifest(ref)
            if current is None:
                raise FileNotFoundError(ref.key)
            if version == current.version:
                return PutResult(current, "current"), current.version
            kept = current.kept()
            if version not in kept or ref.kind not in VERSIONED_KINDS:
                raise VersionNotKept(version, sorted(kept))
            target = kept[version]
            if not target.describes(self._dirs.lstat(versions_dir(ref.kind), version_name(ref.name, version))):
                raise StoreCorrupt(f"Stored version {version} of '{ref.key}' does not match its manifest")
            previous, dropped = self._keep_previous(ref, current, exclude=version)
            manifest = replace(
                target,
                fileId=current.fileId,
                key=current.key,
                created=current.created,
                updated=now(),
                previous=previous,
                latest=current.latest_version,
                versionCreated=target.committed,
            )
            try:
                commit.stage_version(self._dirs, ref, target)
                self._commit(ref, manifest)
            except BaseException:
                self._dirs.unlink_quietly((ref.kind,), commit.data_temp(ref.name))
                raise
            commit.drop_versions(self._dirs, ref, dropped)
        return PutResult(manifest, "rolledBack"), current.version

    # -- deleting ------------------------------------------------------------
    def delete(self, ref: ObjectRef, before: Callable[[Manifest], bool] | None = None) -> Manifest | None:
        """Delete ``ref`` (object, manifest, fileId entry); its manifest, or ``None`` if absent.

        Under the name's writer lock (all three bytes in one lock call), so
        no write of this name interleaves. ``before``, if given, runs under
        the lock with the manifest about to be deleted: it returns ``False``
        to keep the object (nothing is deleted, ``None`` is returned), or
        raises to abort. Crash-safe: see ``commit.remove`` for the order.
        EFS round trips: one lock call, one manifest read, three unlinks,
        one unlock (the intent check is an ``lstat`` from the attribute cache).
        """
        with self._locked(ref, _WRITE_ALL):
            if self._has_pending(ref):
                commit.finish_pending(self._dirs, ref)
            manifest = self.manifest(ref)
            if manifest is None:
                return None
            if before is not None and not before(manifest):
                return None
            # Every kept version's file, the current's too if a rollback made one
            # (``latest`` set). A file a crash left is the sweep's, as the object is.
            older = [n for n in manifest.kept() if n != manifest.version or manifest.latest is not None]
            commit.remove(self._dirs, ref, manifest.fileId if ref.kind in INDEXED_KINDS else None, older)
            if ref.kind in INGEST_KINDS:
                self.status.clear(ref)  # an old pending/failed record must not outlive the object
        return manifest

    # -- debris --------------------------------------------------------------
    def reclaim(self, min_age: float = 0.0) -> int:
        """Finish dead writers' commits and remove their temp files, for every name.

        Only files older than ``min_age`` seconds are touched, and only for
        names whose WRITER lock is free right now (a live writer's are
        skipped, never waited for), so this is safe to run at any time.
        Returns how many temp files were removed.
        """
        cutoff = time.time() - min_age
        removed = 0
        for kind in KINDS:
            debris: dict[str, builtins.list[tuple[tuple[str, ...], str]]] = defaultdict(builtins.list)
            meta_entries = self._dirs.listdir((META, kind))
            meta_names = set(meta_entries)
            for entry in self._dirs.listdir((kind,)):
                if m := TEMP_RE.match(entry):
                    debris[m.group("name")].append(((kind,), entry))
                elif (
                    is_valid_name(entry) and entry + ".json" not in meta_names and entry + ".pending" not in meta_names
                ):
                    # An object without manifest or intent: a delete that died
                    # after its commit point (re-checked under the lock).
                    debris[entry].append(((kind,), entry))
            for entry in meta_entries:
                m = TEMP_RE.match(entry)
                owner = m.group("name") if m else entry
                for suffix in (".json", ".pending"):
                    # Temps of manifests, and intents left by a crash.
                    if owner.endswith(suffix) and (m or suffix == ".pending"):
                        debris[owner[: -len(suffix)]].append(((META, kind), entry))
            for name, files in sorted(debris.items()):
                if is_valid_name(name):
                    removed += self._reclaim_name(ObjectRef(kind, name), files, cutoff)
        for kind in VERSIONED_KINDS:
            removed += self._reclaim_versions(kind, cutoff)
        return removed + self.status.reclaim(cutoff)

    def _version_listed(self, ref: ObjectRef, version: int) -> bool:
        """Whether the version file of ``version`` is one the manifest keeps (its identity)."""
        manifest = self.manifest(ref)
        if manifest is None:
            return self._has_pending(ref)  # a first commit in flight: judged after it
        wanted = manifest.kept().get(version)
        return wanted is not None and wanted.describes(
            self._dirs.lstat(versions_dir(ref.kind), version_name(ref.name, version))
        )

    def _reclaim_versions(self, kind: str, cutoff: float) -> int:
        """Unlink version files no manifest keeps: a prune or a delete that died
        after its commit point, or an older life of the name. Age is judged by
        ``ctime`` (a link's time; the mtime is the version's own, and old)."""
        parts, removed = versions_dir(kind), 0
        for entry in sorted(self._dirs.listdir(parts)):
            m = VERSION_RE.match(entry)
            if m is None or not is_valid_name(m.group("name")):
                continue
            ref, version = ObjectRef(kind, m.group("name")), int(m.group("n"))
            st = self._dirs.lstat(parts, entry)
            if st is None or st.st_ctime > cutoff or self._version_listed(ref, version):
                continue
            try:
                with self._locked(ref, _WRITE_ALL, timeout=0):
                    if self._has_pending(ref):
                        commit.finish_pending(self._dirs, ref)
                    if not self._version_listed(ref, version):
                        self._dirs.unlink_quietly(parts, entry)
                        removed += self._dirs.lstat(parts, entry) is None
            except (EfsWriteFailed, DeadlineExceeded):
                continue  # being written now: the next sweep looks again
        return removed

    def _reclaim_name(self, ref: ObjectRef, files: builtins.list[tuple[tuple[str, ...], str]], cutoff: float) -> int:
        def old(parts: tuple[str, ...], entry: str) -> bool:
            st = self._dirs.lstat(parts, entry)
            return st is not None and st.st_mtime <= cutoff

        if not any(old(*f) for f in files):
            return 0
        try:
            with self._locked(ref, _WRITE_ALL, timeout=0):
                temps = [(p, e) for p, e in files if not e.endswith(".pending") and old(p, e)]
                if any(e.endswith(".pending") and old(p, e) for p, e in files):
                    commit.finish_pending(self._dirs, ref)  # may consume a temp (roll forward)
                if ((ref.kind,), ref.name) in temps and (self._has_pending(ref) or self.manifest(ref) is not None):
                    temps.remove(((ref.kind,), ref.name))  # the object is live again: not debris
                for parts, entry in temps:
                    self._dirs.unlink_quietly(parts, entry)
                return sum(self._dirs.lstat(p, e) is None for p, e in temps)
        except (EfsWriteFailed, DeadlineExceeded):
            return 0  # being written now: its writer (or the next sweep) cleans up

    # -- health --------------------------------------------------------------
    def health(self) -> dict[str, bool]:
        """Whether the root exists, is a mount point, and takes a durable write."""
        report = {"mounted": os.path.ismount(self.root), "exists": os.path.isdir(self.root), "writable": False}
        if report["exists"]:
            # the store as it is now, not as first opened
            dirs = fs.Dirs(self.root, cache=False, sync_dirs=self._dirs.sync_dirs)
            try:
                commit.atomic_write(dirs, (META,), "health-probe", b"ok", stage="health")
                report["writable"] = True
            except (ServiceError, OSError):
                pass
            finally:
                dirs.close()
        return report
