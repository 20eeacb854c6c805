"""Children for the versions reliability tests: a rollback or a pruning
ingest that SIGKILLs itself at a named step (test_crash_versions.py), and
writers and pinned readers running together (test_concurrency_versions.py).

Top-level functions, so that multiprocessing's 'spawn' can import them in a
fresh interpreter. The hooks wrap os.link/os.rename/os.unlink of the child
only; the store code runs unmodified up to the instant of death.
"""

from __future__ import annotations

import json
import os
import random
import signal

VERSIONS = os.sep + os.path.join(".meta", "versions", "models") + os.sep


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _hook(root: str, name: str, point: str) -> None:
    target = os.path.join(root, "models", name)
    real_link, real_rename, real_unlink = os.link, os.rename, os.unlink

    def link(src, dst, *a, **kw):
        real_link(src, dst, *a, **kw)
        dst = os.fspath(dst)
        if point == "after-keep-link" and VERSIONS in dst:
            _die()
        if point == "after-stage-link" and os.path.basename(dst).startswith("." + name + "."):
            _die()

    def rename(src, dst, *a, **kw):
        dst = os.fspath(dst)
        real_rename(src, dst, *a, **kw)
        if point == "after-intent" and dst.endswith(os.sep + name + ".pending"):
            _die()
        if point == "after-data-rename" and dst == target:
            _die()
        if point == "after-manifest-rename" and dst.endswith(os.sep + name + ".json") and ".meta" in dst:
            _die()

    def unlink(path, *a, **kw):
        path = os.fspath(path)
        if point == "before-prune-unlink" and VERSIONS in path:
            _die()
        real_unlink(path, *a, **kw)
        if point == "after-manifest-unlink" and path == name + ".json" and kw.get("dir_fd") is not None:
            _die()

    os.link, os.rename, os.unlink = link, rename, unlink


def rollback_at(root: str, name: str, version: int, point: str) -> None:
    """Roll ``models/<name>`` back to ``version``, dying at ``point``."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    _hook(root, name, point)
    store.rollback(ObjectRef("models", name), version)


def ingest_at(root: str, name: str, data: bytes, point: str) -> None:
    """Ingest ``data`` as a new version of ``models/<name>``, dying at ``point``."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    _hook(root, name, point)
    store.put(ObjectRef("models", name), [data], source="inline")


def delete_at(root: str, name: str, point: str) -> None:
    """Delete ``models/<name>`` and all its versions, dying at ``point``."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    _hook(root, name, point)
    store.delete(ObjectRef("models", name))


def version_writer(root: str, wid: int, ops: int, go, out: str) -> None:
    """Ingest new bytes or roll back to a random kept version, ``ops`` times;
    record which bytes each version number was given."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store
    from chalicelib.store.errors import VersionNotKept
    from tests.support.reliability import content

    store, ref, rng = Store(root), ObjectRef("models", "m.bin"), random.Random(wid)
    made: dict[int, str] = {}
    rollbacks = 0
    go.wait()
    for i in range(ops):
        current = store.manifest(ref)
        if current is not None and rng.random() < 0.4:
            try:
                result, _ = store.rollback(ref, rng.choice(sorted(current.kept())))
                rollbacks += result.status == "rolledBack"
            except VersionNotKept:
                pass  # another writer pruned it meanwhile
        else:
            m = store.put(ref, [content((wid, i), rng.randrange(1, 64) * 1024)], source="inline").manifest
            made[m.version] = m.sha256
    with open(out, "w") as f:
        json.dump({"made": made, "rollbacks": rollbacks}, f)


def pinned_reader(root: str, rid: int, go, stop, out: str) -> None:
    """Read random kept versions by number until ``stop``; record what each number held."""
    import hashlib

    from chalicelib.names import ObjectRef
    from chalicelib.store import Store
    from chalicelib.store.errors import VersionNotKept

    store, ref, rng = Store(root), ObjectRef("models", "m.bin"), random.Random(1000 + rid)
    seen: dict[int, str] = {}
    reads = pruned = 0
    go.wait()
    while not stop.is_set():
        current = store.manifest(ref)
        if current is None:
            continue
        n = rng.choice(sorted(current.kept()))
        try:
            with store.open(ref, n) as (m, f):
                data = f.read()
        except VersionNotKept:
            pruned += 1  # pruned between our manifest read and the open: a clean 404
            continue
        digest = hashlib.sha256(data).hexdigest()
        assert m.version == n and digest == m.sha256 and len(data) == m.size, "torn or mismatched version"
        assert seen.setdefault(n, digest) == digest, f"version {n} changed its bytes"
        reads += 1
    with open(out, "w") as f:
        json.dump({"seen": seen, "reads": reads, "pruned": pruned}, f)
