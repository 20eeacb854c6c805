"""Helpers for tests/reliability: child-process workers and store invariants.

Workers are top-level functions so that multiprocessing's 'spawn' start
method can import them in a fresh interpreter: every child is a real,
separate process with its own record locks, as two Lambdas on EFS are.
Children build their own Store/Settings from arguments, never from the
parent's caches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import random
import re
import signal
import time
from typing import Any, Iterator

TEMP_RE = re.compile(r"\..+\.[0-9a-f]{32}\.tmp\Z")
STORE_DIRS = ("models", "inputs", "outputs", ".meta")


def spawn() -> multiprocessing.context.SpawnContext:
    return multiprocessing.get_context("spawn")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content(seed: Any, size: int) -> bytes:
    """Deterministic bytes for ``seed`` (parent and child agree on them)."""
    return random.Random(repr(seed)).randbytes(size)


def debris(root: str) -> list[str]:
    """Temp files and ``.pending`` intents anywhere in the store's data/meta dirs."""
    found = []
    for top in STORE_DIRS:
        for dirpath, _dirs, files in os.walk(os.path.join(root, top)):
            for f in files:
                if TEMP_RE.match(f) or f.endswith(".pending"):
                    found.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(found)


def settings_for(root: str, **env: str):
    from chalicelib.config import load_settings

    return load_settings({"EFS_ROOT": root, **env})


def chunked(data: bytes, chunk: int, delay_max: float = 0.0, rng: random.Random | None = None) -> Iterator[bytes]:
    for i in range(0, len(data), chunk):
        if delay_max:
            time.sleep((rng or random).uniform(0, delay_max))
        yield data[i : i + chunk]


def _app_client(root: str, extra_env: dict[str, str] | None = None):
    """chalice.test.Client in this (child) process, on ``root``."""
    os.environ["EFS_ROOT"] = root
    os.environ.pop("MODEL_BUCKET", None)
    os.environ.update(extra_env or {})
    from chalice.test import Client

    import app
    from tests.support.env import deployed_lambda_timeouts

    deployed_lambda_timeouts()

    return Client(app.app)


# -- concurrency -------------------------------------------------------------
def writer(root: str, wid: int, names: list[str], ops: int, mode: str, go, out: str) -> None:
    """Ingest ``ops`` contents over ``names``; record every answer to ``out``.

    mode: ``ingest`` (ingest_bytes), ``stream`` (Store.put in 16 KiB chunks)
    or ``route`` (POST /ingest through chalice.test.Client, base64 body).
    Contents repeat with period 3 per writer, so some writes are "exists".
    """
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store, settings = Store(root, lock_timeout=60), settings_for(root)
    http = _app_client(root) if mode == "route" else None
    rng = random.Random(wid)
    results = []
    go.wait()
    for k in range(ops):
        name = names[k % len(names)]
        data = content((wid, name, k % 3), rng.randrange(1, 256) * 1024)
        if mode == "route":
            r = http.http.post(
                "/ingest",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"filename": name, "data": base64.b64encode(data).decode(), "encoding": "base64"}),
            )
            assert r.status_code == 200, r.body
            body = json.loads(r.body)
            status, version, digest, fid = body["status"], body["version"], body["sha256"], body["fileId"]
        elif mode == "stream":
            res = store.put(ObjectRef("models", name), chunked(data, 16 * 1024), source="inline")
            status, version, digest, fid = res.status, res.manifest.version, res.manifest.sha256, res.manifest.fileId
        else:
            res = ingest_bytes(store, settings, ObjectRef("models", name), data)
            status, version, digest, fid = res.status, res.manifest.version, res.manifest.sha256, res.manifest.fileId
        assert digest == sha(data), "ingest answered a hash that is not of the bytes sent"
        results.append({"name": name, "status": status, "version": version, "sha256": digest, "fileId": fid})
    with open(out, "w") as f:
        json.dump(results, f)


def reader(root: str, rid: int, names: list[str], mode: str, go, stop, out: str) -> None:
    """Read or predict until ``stop``; record (name, version, sha, ok) per read.

    mode: ``open`` (Store.open, hashing the stream), ``read`` (read_bytes),
    ``predict`` (chalicelib.predict) or ``route`` (POST /predict).
    """
    from chalicelib.errors import NotFound
    from chalicelib.model_cache import ModelCache
    from chalicelib.names import ObjectRef
    from chalicelib.predict import predict
    from chalicelib.runners import Limits
    from chalicelib.store import Store
    from chalicelib.validation import PredictRequest

    store, settings = Store(root, lock_timeout=60), settings_for(root)
    models = ModelCache(settings.model_cache_bytes, Limits.from_settings(settings))
    http = _app_client(root) if mode == "route" else None
    seen, bad, k = [], [], 0
    go.wait()
    while not stop.is_set() or k < 4:
        name = names[k % len(names)]
        ref = ObjectRef("models", name)
        k += 1
        try:
            if mode == "open":
                with store.open(ref) as (m, f):
                    h, n = hashlib.sha256(), 0
                    while chunk := f.read(7 * 1024):
                        h.update(chunk)
                        n += len(chunk)
                ok = (h.hexdigest(), n) == (m.sha256, m.size)
                seen.append([name, m.version, m.sha256, h.hexdigest(), ok])
            elif mode == "read":
                m, data = store.read_bytes(ref, verify=False)
                seen.append([name, m.version, m.sha256, sha(data), (sha(data), len(data)) == (m.sha256, m.size)])
            else:
                if mode == "predict":
                    body = predict(store, settings, models, PredictRequest(f"reader-{rid}", ref))
                else:
                    r = http.http.post(
                        "/predict",
                        headers={"Content-Type": "application/json"},
                        body=json.dumps({"fileId": f"reader-{rid}", "model": name}),
                    )
                    body = json.loads(r.body)
                    if r.status_code == 404 and body.get("error") == "NOT_FOUND":
                        raise FileNotFoundError(name)
                    assert r.status_code == 200, r.body
                res, model = body["result"], body["model"]
                # The opaque runner streams the model through a hashing reader
                # and answers the manifest's checksum only if they agree.
                seen.append(
                    [
                        name,
                        model["version"],
                        model["sha256"],
                        res["checksum"],
                        res["checksum"] == model["sha256"] and res["processed"] is True,
                    ]
                )
        except (FileNotFoundError, NotFound):
            # Not ingested yet (in-process predict says NotFound, the others
            # FileNotFoundError); but a name once read must never vanish.
            if any(entry[0] == name for entry in seen):
                bad.append(f"{name} was read, then not found")
            continue
        except Exception as exc:  # recorded, asserted by the parent
            bad.append(f"{type(exc).__name__}: {exc}")
    with open(out, "w") as f:
        json.dump({"seen": seen, "errors": bad}, f)


def hold_writer_lock(root: str, name: str, held, release) -> None:
    """Hold ``name``'s WRITER record lock until ``release`` is set."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    with store._writer_lock(ObjectRef("models", name), timeout=5):
        held.set()
        release.wait(60)


def put_once(root: str, name: str, seed: Any, size: int, lock_timeout: float, out: str) -> None:
    """One ingest; writes the outcome (status or error code/stage) to ``out``."""
    from chalicelib.errors import ServiceError
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    started = time.monotonic()
    try:
        res = ingest_bytes(
            Store(root, lock_timeout=lock_timeout), settings_for(root), ObjectRef("models", name), content(seed, size)
        )
        outcome = {"status": res.status, "version": res.manifest.version}
    except ServiceError as exc:
        outcome = {"error": exc.CODE, **exc.details}
    outcome["seconds"] = time.monotonic() - started
    with open(out, "w") as f:
        json.dump(outcome, f)


# -- crashes -----------------------------------------------------------------
def crash_writer(root: str, name: str, seed: Any, size: int, chunk: int, delay_max: float, ready) -> None:
    """Stream a large ingest; the parent SIGKILLs us at a random moment."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    data = content(seed, size)
    ready.set()
    Store(root).put(
        ObjectRef("models", name), chunked(data, chunk, delay_max, random.Random(repr(seed))), source="inline"
    )


def crash_at(root: str, name: str, seed: Any, size: int, point: str) -> None:
    """Ingest, SIGKILLing ourselves at a named point of the commit protocol.

    The hook wraps os.rename/os.fsync of this process only; the store code
    runs unmodified up to the instant of death.
    """
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    ref = ObjectRef("models", name)
    target = store.path(ref)
    real_rename, real_fsync = os.rename, os.fsync

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def rename(src, dst, *a, **kw):
        dst = os.fspath(dst)
        if point == "before-intent" and dst.endswith(".pending"):
            die()
        if point == "before-data-rename" and dst == target:
            die()
        real_rename(src, dst, *a, **kw)
        if point == "after-data-rename" and dst == target:
            die()
        if point == "after-manifest-rename" and dst.endswith(os.sep + name + ".json") and ".meta" in dst:
            die()

    def fsync(fd):
        real_fsync(fd)
        if point == "after-data-fsync" and os.readlink(f"/proc/self/fd/{fd}").startswith(
            os.path.join(root, "models", "." + name + ".")
        ):
            die()

    os.rename, os.fsync = rename, fsync
    store.put(ref, [content(seed, size)], source="inline")


# -- idempotency --------------------------------------------------------------
def deliver_event(root: str, env: dict[str, str], event: dict, go, out: str) -> None:
    """Invoke the S3 handler with ``event`` through chalice.test.Client."""
    http = _app_client(root, env)
    go.wait()
    r = http.lambda_.invoke("on_object_created", event)
    with open(out, "w") as f:
        json.dump(r.payload, f)


def hammer_reads(root: str, name: str, go, stop) -> None:
    """Store.open in a tight loop until ``stop`` (a steady stream of readers)."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store, ref = Store(root), ObjectRef("models", name)
    go.wait()
    while not stop.is_set():
        with store.open(ref) as (m, f):
            assert sha(f.read()) == m.sha256


def crash_delete_at(root: str, name: str, point: str) -> None:
    """Delete ``models/<name>``, SIGKILLing ourselves at a named point of the delete.

    Points: ``before-manifest-unlink``, ``after-manifest-unlink`` (the
    commit point), ``after-index-unlink``.
    """
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    real_unlink = os.unlink

    def unlink(path, *a, **kw):
        path = os.fspath(path)
        manifest = path == name + ".json" and kw.get("dir_fd") is not None
        if point == "before-manifest-unlink" and manifest:
            os.kill(os.getpid(), signal.SIGKILL)
        real_unlink(path, *a, **kw)
        if point == "after-manifest-unlink" and manifest:
            os.kill(os.getpid(), signal.SIGKILL)
        if point == "after-index-unlink" and os.sep + "ids" + os.sep in path:
            os.kill(os.getpid(), signal.SIGKILL)

    os.unlink = unlink
    Store(root).delete(ObjectRef("models", name))
