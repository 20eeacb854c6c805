"""Model versions: pinned reads, the version list, rollback (docs/versions.md).

The store keeps each model's last ``MODEL_VERSIONS_KEPT`` versions
(``docs/design/versions.md``); this module is the use case behind
``GET /models/{name}?version=n``, ``GET /models/{name}/versions`` and
``POST /models/{name}/rollback``, and the one place that turns a version the
store does not keep into the documented ``404 NOT_FOUND``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.catalog import describe
from chalicelib.errors import NotFound
from chalicelib.names import MODELS, ObjectRef, parse_path_name
from chalicelib.store import Manifest, Store
from chalicelib.store.errors import VersionNotKept


def not_kept(ref: ObjectRef, exc: VersionNotKept, file_id: str | None = None) -> NotFound:
    """The documented 404 for a version the store does not keep, naming those it does."""
    kept = ", ".join(map(str, exc.kept)) or "none"
    return NotFound(
        file_id,
        f"Version {exc.version} of '{ref.name}' is not kept on EFS (kept versions: {kept}); "
        "older versions stay in the bucket's object versions (docs/versions.md)",
    )


def manifest_at(store: Store, ref: ObjectRef, version: int | None, file_id: str | None = None) -> Manifest:
    """The manifest of ``ref``'s kept ``version`` (``None``: current); one lock-free read, or 404."""
    try:
        return store.version(ref, version)
    except FileNotFoundError:
        raise NotFound(file_id) from None
    except VersionNotKept as exc:
        raise not_kept(ref, exc, file_id) from None


def _ref(raw_name: str) -> ObjectRef:
    return ObjectRef(MODELS, parse_path_name(raw_name, "name"))


def _current(store: Store, ref: ObjectRef) -> Manifest:
    current = store.manifest(ref)
    if current is None:
        raise NotFound(None, f"Model '{ref.name}' not found on EFS")
    return current


def get_version(store: Store, raw_name: str, version: int) -> dict[str, Any]:
    """``GET /models/{name}?version=n``: that version's manifest, and which is current."""
    ref = _ref(raw_name)
    current = _current(store, ref)
    try:
        manifest = current.kept()[version]
    except KeyError:
        raise not_kept(ref, VersionNotKept(version, sorted(current.kept()))) from None
    return {
        **describe(manifest),
        "created": current.created,
        "versionCreated": manifest.committed,
        "state": "ready",
        "current": manifest.version == current.version,
        "readyVersion": current.version,
    }


def list_versions(store: Store, raw_name: str) -> dict[str, Any]:
    """``GET /models/{name}/versions``: every kept version, newest number first."""
    ref = _ref(raw_name)
    current = _current(store, ref)
    versions = [
        {
            "version": m.version,
            "sha256": m.sha256,
            "sizeBytes": m.size,
            "created": m.committed,
            "source": m.source,
            "etag": m.etag,
            "current": m.version == current.version,
        }
        for _, m in sorted(current.kept().items(), reverse=True)
    ]
    return {
        "name": ref.name,
        "key": ref.key,
        "currentVersion": current.version,
        "latestVersion": current.latest_version,
        "versions": versions,
        "count": len(versions),
    }


def rollback(store: Store, raw_name: str, version: int) -> dict[str, Any]:
    """``POST /models/{name}/rollback {"version": n}``: make kept version ``n`` current again."""
    ref = _ref(raw_name)
    try:
        result, before = store.rollback(ref, version)
    except FileNotFoundError:
        raise NotFound(None, f"Model '{ref.name}' not found on EFS") from None
    except VersionNotKept as exc:
        raise not_kept(ref, exc) from None
    return {
        "status": result.status,
        **describe(result.manifest),
        "previousVersion": before if result.status == "rolledBack" else None,
        "latestVersion": result.manifest.latest_version,
    }
