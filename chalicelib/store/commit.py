"""The commit protocol for one name, and its recovery.

Files of one name ``<kind>/<name>``::

    <kind>/.<name>.<T>.tmp            the next object, being written
    .meta/<kind>/.<name>.json.<T>.tmp the next manifest, being written
    .meta/<kind>/<name>.pending       the intent: the next manifest, published
    .meta/<kind>/<name>.json          the manifest
    .meta/ids/<fileId>.json           symlink whose text is "<kind>/<name>"
    .meta/versions/<kind>/<name>.v<n> a kept older version: a hard link (models only)

``<T>`` is fixed: only the holder of the name's WRITER lock writes these
temp files, so one name per purpose is enough, and a dead writer's temp is
simply replaced by the next writer (no directory listing to find it).

A write, under WRITER (see ``locks``):

1. the object goes to its temp file, is fsynced; its identity (inode,
   mtime) is read with ``fstat``;
2. under COMMIT: the new manifest, carrying that identity, is written to
   its temp file, fsynced and renamed to ``<name>.pending``: the manifest
   *is* the intent, there is no separate intent file to write;
3. the object's temp is renamed over the object (the commit point), and
   its directory fsynced;
4. the intent is hard-linked to the manifest temp name, which is renamed
   over ``<name>.json``; then the intent is unlinked. The manifest is
   written once: publishing it is three namespace operations, no data.

Directory fsyncs make each rename durable before the next step on a local
disk. On NFS (EFS) they cost nothing: namespace operations are synchronous
on the server, and Linux's client implements a directory fsync as a no-op
(``nfs_fsync_dir``: "All directory operations under NFS are synchronous"),
so the store skips them there (``fs.DirSync``, ``STORE_DIR_FSYNC``).

Recovery (whoever next holds COMMIT exclusively and finds ``.pending``):
the object on disk has the intent's identity -> the swap happened, roll
forward (step 4); otherwise roll back (drop the intent and the temp).

Versions (``docs/design/versions.md``): before step 2, a replaced current
version that stays kept gets a second name under ``.meta/versions/`` by
``link(2)``; a rollback's step 1 is a link of the kept version to the data
temp instead of writing bytes. Neither adds a recovery case: recovery still
judges by the identity of the object at the name. After step 4, versions
that fell out of the kept set are unlinked (a crash before that leaves
files no manifest lists, which readers never serve and reclaim removes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from typing import Iterable

from chalicelib.errors import EfsWriteFailed, FileTooLarge
from chalicelib.names import ObjectRef
from chalicelib.store import fs
from chalicelib.store.manifest import Manifest, parse
from chalicelib.store.streaming import WriteBehind

META = ".meta"
LOCKS = ".locks"
IDS = "ids"
VERSIONS = "versions"
TOKEN = "0" * 32
TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<token>[0-9a-f]{32})\.tmp\Z")
# Greedy: the number is the digits after the *last* ".v" (model "a.v2", version 3: "a.v2.v3").
VERSION_RE = re.compile(r"(?P<name>.+)\.v(?P<n>[1-9][0-9]*)\Z")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | fs.NOFOLLOW


def data_temp(name: str) -> str:
    return f".{name}.{TOKEN}.tmp"


def manifest_temp(name: str) -> str:
    return f".{name}.json.{TOKEN}.tmp"


def pending_name(name: str) -> str:
    return name + ".pending"


def manifest_name(name: str) -> str:
    return name + ".json"


def version_name(name: str, version: int) -> str:
    """The file name of a kept version of ``name`` in ``.meta/versions/<kind>/``."""
    return f"{name}.v{version}"


def versions_dir(kind: str) -> tuple[str, str, str]:
    return (META, VERSIONS, kind)


def directory(dirs: fs.Dirs, *parts: str) -> None:
    """Make sure a store directory exists and is real (not a symlink) before writing in it."""
    try:
        dirs.fd(*parts, create=True)
    except OSError as exc:
        raise EfsWriteFailed(
            "open", f"Store layout is damaged: a store directory is not a directory ({fs.reason(exc)})"
        ) from None


def create(dirs: fs.Dirs, parts: tuple[str, ...], name: str) -> int:
    """Create ``name`` afresh in ``parts`` for writing, replacing a dead writer's leftover.

    Raises ``OSError``; the caller names the stage.
    """
    directory(dirs, *parts)
    path = dirs.path(*parts, name)
    try:
        return os.open(path, _CREATE, 0o644)
    except FileExistsError:
        dirs.unlink_quietly(parts, name)  # debris of a writer that died holding this name
        return os.open(path, _CREATE, 0o644)


def write_temp(
    dirs: fs.Dirs, ref: ObjectRef, chunks: Iterable[bytes | memoryview], max_bytes: int | None
) -> tuple[int, str, os.stat_result]:
    """Stream ``chunks`` into the name's data temp, hashing in the same pass; fsync.

    Returns (size, sha256, fstat of the temp). On any failure the temp is gone.
    """
    try:
        fd = create(dirs, (ref.kind,), data_temp(ref.name))
    except OSError as exc:
        raise EfsWriteFailed("open", f"Failed to create file on EFS ({fs.reason(exc)})") from None
    # Same single pass: sha256 here, in order, on the chunk just received
    # (still in cache); the stream's own threads receive the next ones, and
    # early write-back lets the final fsync wait only for the tail.
    hasher = hashlib.sha256()
    write_behind = WriteBehind(fd)
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise FileTooLarge(max_bytes)
            hasher.update(chunk)
            try:
                fs.write_all(fd, chunk)
            except OSError as exc:
                raise EfsWriteFailed("write", f"Failed to write file to EFS ({fs.reason(exc)})") from None
            write_behind.wrote(len(chunk))
        try:
            os.fsync(fd)
        except OSError as exc:
            raise EfsWriteFailed("fsync", f"Failed to flush file to EFS ({fs.reason(exc)})") from None
        st = os.fstat(fd)
        digest = hasher.hexdigest()
    except BaseException:
        fs.close_quietly(fd)
        dirs.unlink_quietly((ref.kind,), data_temp(ref.name))
        raise
    fs.close_quietly(fd)
    return size, digest, st


def _create_or_fail(dirs: fs.Dirs, parts: tuple[str, ...], name: str, stage: str) -> int:
    try:
        return create(dirs, parts, name)
    except OSError as exc:
        raise EfsWriteFailed(stage, f"Failed to write {stage} on EFS ({fs.reason(exc)})") from None


def write_intent(dirs: fs.Dirs, ref: ObjectRef, manifest: Manifest) -> None:
    """Publish the next manifest as ``<name>.pending``, durably (steps 2 of the protocol)."""
    meta = (META, ref.kind)
    tmp = dirs.path(*meta, manifest_temp(ref.name))
    fd = _create_or_fail(dirs, meta, manifest_temp(ref.name), "manifest")
    try:
        try:
            fs.write_all(fd, manifest.to_json())
            os.fsync(fd)
        finally:
            fs.close_quietly(fd)
        os.rename(tmp, dirs.path(*meta, pending_name(ref.name)))
    except OSError as exc:
        dirs.unlink_quietly(meta, manifest_temp(ref.name))
        raise EfsWriteFailed("manifest", f"Failed to write manifest on EFS ({fs.reason(exc)})") from None
    except BaseException:
        dirs.unlink_quietly(meta, manifest_temp(ref.name))
        raise
    try:
        dirs.fsync(*meta)  # the intent is durable before the commit point
    except OSError as exc:
        dirs.unlink_quietly(meta, pending_name(ref.name))
        raise EfsWriteFailed("manifest", f"Failed to write manifest on EFS ({fs.reason(exc)})") from None


def swap(dirs: fs.Dirs, ref: ObjectRef) -> None:
    """Rename the data temp over the object (the commit point) and make it durable."""
    try:
        directory(dirs, ref.kind)
        os.rename(dirs.path(ref.kind, data_temp(ref.name)), dirs.path(ref.kind, ref.name))
    except BaseException as exc:
        # No swap: withdraw the intent *before* the caller deletes the
        # temp file, or recovery would roll a stale intent forward.
        dirs.unlink_quietly((META, ref.kind), pending_name(ref.name))
        if isinstance(exc, OSError):
            raise EfsWriteFailed("rename", f"Failed to publish file on EFS ({fs.reason(exc)})") from None
        raise
    # Swapped: from here on the intent may only roll forward.
    try:
        dirs.fsync(ref.kind)
    except OSError as exc:
        # Publishing the manifest before the swap is durable could pair a
        # new manifest with old bytes after a crash; leave the intent for
        # recovery, which judges by what is actually on disk.
        raise EfsWriteFailed("fsync", f"Failed to flush directory on EFS ({fs.reason(exc)})") from None


def publish(dirs: fs.Dirs, ref: ObjectRef) -> None:
    """Make the intent the manifest, then drop the intent; durably (step 4).

    Idempotent: recovery repeats it after a crash at any point in it.
    """
    meta = (META, ref.kind)
    directory(dirs, *meta)
    pending, tmp = dirs.path(*meta, pending_name(ref.name)), dirs.path(*meta, manifest_temp(ref.name))
    intent, current = dirs.lstat(meta, pending_name(ref.name)), dirs.lstat(meta, manifest_name(ref.name))
    try:
        # Already the manifest (a crash between the rename and the unlink):
        # a rename onto another link of the same file would do nothing.
        if intent is None or current is None or (intent.st_dev, intent.st_ino) != (current.st_dev, current.st_ino):
            try:
                os.link(pending, tmp)
            except FileExistsError:  # left by a crash inside this very step
                os.unlink(tmp)
                os.link(pending, tmp)
            os.rename(tmp, dirs.path(*meta, manifest_name(ref.name)))
        os.unlink(pending)
        dirs.fsync(*meta)
    except OSError as exc:
        raise EfsWriteFailed("manifest", f"Failed to write manifest on EFS ({fs.reason(exc)})") from None


def read_pending(dirs: fs.Dirs, ref: ObjectRef) -> bytes | None:
    try:
        fd = dirs.open((META, ref.kind), pending_name(ref.name))
    except FileNotFoundError:
        return None
    try:
        return fs.read_all(fd)
    finally:
        os.close(fd)


def finish_pending(dirs: fs.Dirs, ref: ObjectRef) -> None:
    """Roll a dead writer's commit forward or back. Caller holds COMMIT exclusively."""
    raw = read_pending(dirs, ref)
    if raw is None:
        return
    meta = (META, ref.kind)
    directory(dirs, *meta)
    pending = dirs.path(*meta, pending_name(ref.name))
    temp = dirs.path(ref.kind, data_temp(ref.name))
    intent = parse(raw)
    if intent is None:
        legacy = _legacy_intent(raw)
        if legacy is None:
            # The intent itself is torn: it was never acted on.
            dirs.unlink_quietly(meta, pending_name(ref.name))
            return
        temp, intent = dirs.path(ref.kind, os.path.basename(legacy[0])), legacy[1]
        swapped = not os.path.lexists(temp)
    else:
        swapped = intent.describes(dirs.lstat((ref.kind,), ref.name))
    if swapped:
        if parse(raw) is None:  # an older store's intent: write the manifest it names
            atomic_write(dirs, meta, manifest_name(ref.name), intent.to_json(), stage="manifest")
            os.unlink(pending)
            dirs.fsync(*meta)
        else:
            publish(dirs, ref)
        return
    # Never swapped: drop the intent first, so that a crash here leaves only
    # a stray temp file, never a wrong roll-forward.
    directory(dirs, *meta)
    os.unlink(pending)
    dirs.fsync(*meta)
    dirs.unlink_quietly((ref.kind,), os.path.basename(temp))


def _link(dirs: fs.Dirs, src: str, parts: tuple[str, ...], name: str) -> None:
    """Hard-link ``src`` as ``name`` in ``parts``, replacing what is there; durable.

    What an existing ``name`` can be: debris of a dead writer (a temp) or of
    an earlier life of the name (a version file a crashed delete left).
    Raises ``OSError``.
    """
    directory(dirs, *parts)
    dst = dirs.path(*parts, name)
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        os.unlink(dst)
        os.link(src, dst, follow_symlinks=False)
    dirs.fsync(*parts)


def keep_version(dirs: fs.Dirs, ref: ObjectRef, current: Manifest) -> None:
    """Give the current object (committed as ``current``) its version file, if
    it has none yet. Caller holds WRITER and checked the object is intact."""
    parts, name = versions_dir(ref.kind), version_name(ref.name, current.version)
    if current.describes(dirs.lstat(parts, name)):
        return  # kept already (it was current before, or a rollback linked it)
    try:
        _link(dirs, dirs.path(ref.kind, ref.name), parts, name)
    except OSError as exc:
        raise EfsWriteFailed("version", f"Failed to keep the previous version on EFS ({fs.reason(exc)})") from None


def stage_version(dirs: fs.Dirs, ref: ObjectRef, version: Manifest) -> None:
    """Make the data temp a second name of a kept version's inode (a rollback's
    step 1: no byte copied). Caller holds WRITER and checked its identity."""
    src = dirs.path(*versions_dir(ref.kind), version_name(ref.name, version.version))
    try:
        _link(dirs, src, (ref.kind,), data_temp(ref.name))
    except OSError as exc:
        raise EfsWriteFailed("version", f"Failed to stage a version on EFS ({fs.reason(exc)})") from None


def drop_versions(dirs: fs.Dirs, ref: ObjectRef, versions: Iterable[int]) -> None:
    """Unlink version files no manifest lists any more (best effort: reclaim sweeps the rest)."""
    for n in versions:
        dirs.unlink_quietly(versions_dir(ref.kind), version_name(ref.name, n))


def remove(dirs: fs.Dirs, ref: ObjectRef, file_id: str | None, versions: Iterable[int] = ()) -> None:
    """Delete one name's manifest, fileId index entry and object, in that order.

    Caller holds WRITER and COMMIT and has finished any intent. Unlinking the
    manifest is the delete's commit point: from then on lock-free readers
    see nothing (``list`` and ``manifest`` read only manifests, ``open``
    needs one). A crash after it leaves an object without a manifest or an
    intent, which no reader ever serves and :meth:`Store.reclaim` removes,
    and at worst an index entry naming a missing (or later a re-created)
    object, which ``lookup_file_id`` refuses because the manifest at that
    name does not carry its fileId. Never a manifest without its object.
    """
    meta = (META, ref.kind)
    try:
        dfd = dirs.fd(*meta)
        if dfd is not None:
            os.unlink(manifest_name(ref.name), dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise EfsWriteFailed("delete", f"Failed to delete manifest on EFS ({fs.reason(exc)})") from None
    if file_id is not None:
        dirs.unlink_quietly((META, IDS), file_id + ".json")
    dirs.unlink_quietly((ref.kind,), ref.name)
    drop_versions(dirs, ref, versions)  # every other version of the name: after the commit point
    try:
        dirs.fsync(*meta)  # the delete is durable before it is answered (a no-op on EFS)
    except OSError:
        pass


def _legacy_intent(raw: bytes) -> tuple[str, Manifest] | None:
    """``{"temp", "manifest"}``: the intent format of the first store (kept:
    see :meth:`Manifest.plausibly_describes` for why)."""
    try:
        doc = json.loads(raw)
        return str(doc["temp"]), Manifest(**doc["manifest"])
    except (ValueError, KeyError, TypeError):
        return None


def record_file_id(dirs: fs.Dirs, file_id: str, ref: ObjectRef) -> None:
    """Index a new fileId: a symlink whose text names the object (never followed).

    One create, atomic by itself: no temp file, no fsync of contents.
    """
    directory(dirs, META, IDS)
    try:
        os.symlink(f"{ref.kind}/{ref.name}", dirs.path(META, IDS, file_id + ".json"))
        dirs.fsync(META, IDS)
    except OSError as exc:
        raise EfsWriteFailed("manifest", f"Failed to write manifest on EFS ({fs.reason(exc)})") from None


def atomic_write(dirs: fs.Dirs, parts: tuple[str, ...], name: str, data: bytes, *, stage: str) -> None:
    """Write ``name`` in ``parts`` whole or not at all, durably (a random temp: no lock needed)."""
    directory(dirs, *parts)
    tmp_name = f".{name}.{uuid.uuid4().hex}.tmp"
    tmp = dirs.path(*parts, tmp_name)
    try:
        fd = os.open(tmp, _CREATE, 0o644)
        try:
            fs.write_all(fd, data)
            os.fsync(fd)
        finally:
            fs.close_quietly(fd)
        os.rename(tmp, dirs.path(*parts, name))
        dirs.fsync(*parts)
    except OSError as exc:
        dirs.unlink_quietly(parts, tmp_name)
        raise EfsWriteFailed(stage, f"Failed to write {stage} on EFS ({fs.reason(exc)})") from None
