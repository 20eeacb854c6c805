"""Where a cold predict's time goes, stage by stage, on the EFS model and on
local disk, beside the bare baselines and our own whole cold predict in the
same run (``python -m bench.cold_stages [--mib 50,400] [--rounds 3]``).

A *stages* probe runs the steps of a cold ``/predict`` in a fresh process,
in the order the service runs them, with the same functions, and stamps
each one's end: the manifest read, the open, the readers' start, the scan
of the mapping, the load message to the worker and its reply (the worker
says how long its own session creation and measure took), the end of the
hash (a watcher stamps when the background hash thread ends), the first
run, the result's write. The whole cold predict (``ours``) and the bare
``InferenceSession(path)`` (``bare``) run as in row 12 (:mod:`bench.cold_efs`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

from bench import cold_efs
from bench.common import MIB, log

ROOT = cold_efs.ROOT
STAGES = ("manifest", "open", "readers", "scan", "session", "hash", "run", "write")


def stages(efs_root: str, name: str, scan_first: bool = False) -> dict[str, Any]:
    """One cold predict's stages in this (fresh) process: ms from the start to each stage's end.

    Imports before the clock, as :func:`bench.cold_efs.probe` (numpy there)."""
    import numpy  # noqa: F401

    os.environ["EFS_ROOT"] = efs_root
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from bench.common import quiet_stdout
    from chalicelib.edge import get_settings, get_store, model_cache
    from chalicelib.names import ObjectRef
    from chalicelib.predict import output_ref, store_and_archive
    from chalicelib.runners import onnx_runner, remote, supervisor
    from chalicelib.store.streaming import HashingReader

    ref = ObjectRef("models", name)
    settings = get_settings()
    limits = model_cache().limits
    sizing = supervisor.Sizing(limits.model_cache_bytes, limits.inference_memory_bytes)
    workers = supervisor.shared()
    workers.call(("ping",), sizing=sizing, timeout=60, allowance=1 << 40)
    store = get_store()
    pid = workers.pid()
    worker_base = cold_efs._rss(pid)
    ends: dict[str, float] = {}
    with quiet_stdout():
        started = time.perf_counter()

        def mark(stage: str) -> None:
            ends[stage] = (time.perf_counter() - started) * 1000

        store.manifest(ref)
        mark("manifest")
        with store.open(ref) as (manifest, f):
            mark("open")
            reader = HashingReader(f)
            path = reader.native_path()
            assert path is not None
            mark("readers")
            background = reader._background
            assert background is not None

            def hashed() -> None:
                background.join()
                mark("hash")

            watcher = threading.Thread(target=hashed)
            watcher.start()
            # As create_session: the walk only where ingest's report does not
            # cover today's limits (or, with scan_first, always: the old order).
            if scan_first or not onnx_runner._scanned(manifest.scan, limits):
                onnx_runner._scan(name, reader.mapped(), limits)
            mark("scan")
            private = tempfile.mkdtemp(prefix="onnx-")
            link = os.path.join(private, "model.onnx")
            os.symlink(f"/proc/{os.getpid()}/" + path[len("/proc/self/") :], link)
            sid = f"{manifest.key}@{manifest.sha256}"
            reply, generation = workers.call(
                ("load", sid, link, name, limits.max_model_bytes, manifest.size),
                sizing=sizing,
                timeout=60,
                allowance=limits.max_model_bytes + limits.inference_memory_bytes,
            )
            mark("session")
            shutil.rmtree(private, ignore_errors=True)
            assert reply[0] == "ok", reply
            worker_ms = reply[4]
            assert reader.finish() == manifest.sha256
            watcher.join()
        session = remote.RemoteSession(workers, sid, generation, sizing, reply[1], reply[2])
        runner = onnx_runner.OnnxRunner(name, session, reply[3], limits)
        result = runner.predict({"x": [[1.0] * 1024]}, "inline")
        mark("run")
        document = json.dumps({"result": result}).encode()
        store_and_archive(store, settings, output_ref("bench-cold-stages"), document, source="bench")
        mark("write")
    return {"ends": ends, "worker_session_ms": worker_ms, "worker_rss": cold_efs._hwm(pid) - worker_base}


def _probe(kind: str, root: str, name: str, file_path: str) -> dict[str, Any]:
    module = "bench.cold_stages" if kind.startswith("stages") else "bench.cold_efs"
    return cold_efs._run_probe(kind, root, name, file_path, module)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# Each stage runs from the end of the one named here to its own end.
_FROM = {"open": "manifest", "readers": "open", "scan": "readers", "hash": "readers", "session": "scan"}
_FROM.update(run="session", write="run")
_COLUMNS = ("stagesscan-efs", "stages-efs", "stagesscan-disk", "stages-disk")


def table(mib: int, samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The stage table of one size: each stage's median start and end (ms
    from the predict's start), scan first (the order before) and now, per place."""
    heads = ("EFS, scan first", "EFS, now", "disk, scan first", "disk, now")
    lines = [f"{mib} MiB, medians of {len(samples['stages-efs'])} (ms from the start: stage start-end)"]
    lines.append(f"{'stage':28}" + "".join(f"{h:>18}" for h in heads))

    def ends(column: str, stage: str) -> float:
        return _median([s["ends"][stage] for s in samples[column] if "ends" in s])

    for stage in STAGES:
        cells = []
        for column in _COLUMNS:
            start = ends(column, _FROM[stage]) if stage in _FROM else 0.0
            cells.append(f"{start:.0f}-{ends(column, stage):.0f}")
        lines.append(f"{stage:28}" + "".join(f"{c:>18}" for c in cells))
    worker = [_median([s["worker_session_ms"] for s in samples[c] if "ends" in s]) for c in _COLUMNS]
    lines.append(f"{'  session: in the worker':28}" + "".join(f"{w:>18.0f}" for w in worker))
    for kind in ("ours", "bare"):
        cells = [_median([s["ms"] for s in samples[f"{kind}-{w}"] if "error" not in s]) for w in ("efs", "disk")]
        lines.append(f"{kind + ' (whole), EFS / disk':28}{cells[0]:>18.0f}{cells[1]:>36.0f}")
    return lines


def main(argv: list[str]) -> None:
    """Mount the EFS model, ingest each size, run every probe kind in turn, print the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.cold_stages")
    parser.add_argument("--mib", default="50,400")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    why = cold_efs._ready()
    if why is not None:
        print(f"skipped: {why}")
        return
    from bench.common import service_env
    from chalicelib.edge import get_settings, get_store
    from chalicelib.ingest import ingest_bytes
    from chalicelib.names import ObjectRef
    from tests.support.onnx_models import big_mlp

    base = tempfile.mkdtemp(prefix="efs-ml-stages-")
    backing, mountpoint = os.path.join(base, "backing"), os.path.join(base, "mnt")
    os.makedirs(backing)
    os.makedirs(mountpoint)
    out: list[str] = [f"load average at start: {os.getloadavg()[0]:.2f}"]
    with cold_efs.mounted(backing, mountpoint):
        for mib in [int(s) for s in args.mib.split(",")]:
            name = f"big{mib}.onnx"
            service_env(backing, None, None)
            data, _ = big_mlp(mib * MIB)
            ref = ObjectRef("models", name)
            ingest_bytes(get_store(), get_settings(), ref, data)
            del data
            local_file = get_store().path(ref)
            efs_file = os.path.join(mountpoint, os.path.relpath(local_file, backing))
            kinds = (
                "stagesscan-efs",
                "stagesscan-disk",
                "stages-efs",
                "stages-disk",
                "ours-efs",
                "ours-disk",
                "bare-efs",
                "bare-disk",
            )
            samples: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for key in kinds:
                    kind, where = key.split("-")
                    root, file_path = (mountpoint, efs_file) if where == "efs" else (backing, local_file)
                    samples[key].append(_probe(kind, root, name, file_path))
            log(f"stages {mib} MiB: {json.dumps(samples)}")
            out.extend(table(mib, samples))
    shutil.rmtree(base, ignore_errors=True)
    out.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    print("\n".join(out))


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"]:
        print(json.dumps(stages(sys.argv[3], sys.argv[4], sys.argv[2] == "stagesscan")))
    else:
        main(sys.argv[1:])
