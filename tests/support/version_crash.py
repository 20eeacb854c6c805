"""Children for the versions crash tests: a rollback or a pruning ingest that
SIGKILLs itself at a named step (tests/reliability/test_crash_versions.py).

Top-level functions, so that multiprocessing's 'spawn' can import them in a
fresh interpreter. The hooks wrap os.link/os.rename/os.unlink of the child
only; the store code runs unmodified up to the instant of death.
"""

from __future__ import annotations

import os
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
