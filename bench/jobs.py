"""Row 11: a batch job's rows/s with 1 and 2 local workers, and the scaling, in one run.

A real local stack (``python -m scripts.local``: moto S3 and SQS, chalice
local) with no workers of its own; each measurement starts N worker
processes (``python -m devstack.jobs``, worker i pinned to CPU i, as a Lambda
has its own vCPUs), runs one job over the same stored ``.npy`` on a
CPU-bound MLP, and reads the job's own ``startedAt`` -> ``finishedAt``
(first block started -> outputs assembled and archived) after a warm-up job
has loaded the model in every worker (warm-up jobs are repeated until each
worker has run a block), so start-up and cold loads are not
counted (the assembly, which one worker does alone, is). 1 and 2 workers alternate ``--jobs-repeat`` times (the lone
worker on each CPU in turn); the row gives the medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import PROJECT, Benchmark, Context, Row, log

TARGET = 1.7


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _api(endpoints: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import requests

    r = requests.request(method, endpoints["api_url"] + path, json=body, timeout=60)
    return r.status_code, r.json()


def _land(endpoints: dict[str, Any], key: str, data: bytes) -> None:
    """Put ``key`` into the local bucket and wait until the S3 event stored it (make s3-put)."""
    import boto3

    boto3.client("s3", endpoint_url=endpoints["s3_endpoint"]).put_object(Bucket=endpoints["bucket"], Key=key, Body=data)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = _api(endpoints, "GET", f"/{key}")
        if status == 200 and body.get("sizeBytes"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{key} did not land")


WARM_INPUT = "inputs/bench-warm.npy"


def _finished(endpoints: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """POST the job and poll it until it succeeds; its final status."""
    status, job = _api(endpoints, "POST", "/jobs", body)
    if status != 202:
        raise RuntimeError(f"POST /jobs: {status} {job}")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        _, doc = _api(endpoints, "GET", job["statusUrl"])
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)  # the figure is the job's own timestamps: polling only costs the API CPU
    if doc["state"] != "succeeded":
        raise RuntimeError(f"job ended {doc['state']}: {doc.get('errors')}")
    return dict(doc)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _run_job(
    endpoints_file: Path,
    endpoints: dict[str, Any],
    workers: int,
    body: dict[str, Any],
    first_cpu: int,
    stack_pids: list[int],
) -> tuple[float, float]:
    """Rows/s of one job with ``workers`` worker processes, pinned from CPU ``first_cpu`` on,
    and the CPU seconds the local stack (the API and moto's S3 and SQS) spent during it."""
    logs = [endpoints_file.parent / f"bench-worker-{i}.log" for i in range(workers)]
    procs = []
    for i, log_path in enumerate(logs):
        with open(log_path, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        *("-m", "devstack.jobs", "--endpoints", str(endpoints_file), "--cpu", str(first_cpu + i)),
                    ],
                    cwd=PROJECT,
                    # INFO: the warm-up reads each worker's "ran" lines (rows before this
                    # one set LOG_LEVEL=WARNING in this process's environment).
                    env={**os.environ, "LOG_LEVEL": "INFO"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        _warm(endpoints, body, logs)
        before = _cpu_seconds(stack_pids)
        doc = _finished(endpoints, body)
        stack_cpu = _cpu_seconds(stack_pids) - before
        return float(doc["rows"]["total"]) / (_epoch(doc["finishedAt"]) - _epoch(doc["startedAt"])), stack_cpu
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _warm(endpoints: dict[str, Any], body: dict[str, Any], logs: list[Path], attempts: int = 30) -> None:
    """Warm-up jobs of one-row blocks until every worker has run a block (its model loaded, as in
    a steady stream of jobs). One warm job is not enough: a worker that starts faster can take all
    of its blocks, and the other then loads the model (~0.4-1.2 s) inside the measured job. A
    worker still starting (its imports, after rows that left the machine busy) is given a second
    between jobs: ten back-to-back jobs once all ran on the other worker."""
    for _ in range(attempts):
        _finished(endpoints, {**body, "input": WARM_INPUT, "batchSize": 1})
        if all(": ran (attempt" in path.read_text(errors="replace") for path in logs):
            return
        time.sleep(1.0)
    raise RuntimeError(f"a worker ran no warm-up block in {attempts} warm-up jobs (see {logs[0].parent})")


def _bare(model: bytes, cpu: int, rows_file: str, batch: int, share: range, start: Any, out: Any) -> None:
    """One pinned process running the model, one intra-op thread (what a pinned worker's
    session gets), over its ``share`` of the input's blocks of ``batch`` rows: its seconds, to ``out``."""
    import numpy as np
    import onnxruntime as ort

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu % len(os.sched_getaffinity(0))]})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.load(rows_file, mmap_mode="r")
    session.run(None, {"x": np.asarray(x[:batch])})
    start.wait()
    started = time.perf_counter()
    for i in share:
        session.run(None, {"x": np.asarray(x[i * batch : (i + 1) * batch])})
    out.send(time.perf_counter() - started)


def _bare_rate(model: bytes, workers: int, rows_file: str, batch: int, first_cpu: int) -> float:
    """Rows/s of ``workers`` bare processes sharing the job's blocks (the same rows, the same
    block size), from one start to the last one's end: the ceiling the machine allows right now."""
    import multiprocessing

    import numpy as np

    total = int(np.load(rows_file, mmap_mode="r").shape[0])
    blocks = -(-total // batch)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_bare,
            args=(model, first_cpu + i, rows_file, batch, range(i, blocks, workers), start, pipes[i][1]),
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    time.sleep(3.0)  # imports and session creation
    start.set()
    seconds = [recv.recv() for recv, _ in pipes]
    for p in procs:
        p.join(30)
    return total / max(seconds)


def run(ctx: Context) -> list[Row]:
    """Row 11: rows/s at 1 and 2 workers (medians of ``--jobs-repeat`` alternating runs), beside the
    same model's bare scaling (two pinned processes running it in a loop) measured in between."""
    import numpy as np

    from devstack.processes import children, start_local, stop, wait_ready
    from tests.support.jobs import npy
    from tests.support.onnx_models import Mlp

    args = ctx.args
    workdir = Path(tempfile.mkdtemp(prefix="jobs-", dir=ctx.disk))
    saved = os.environ.get("JOB_WORKERS")
    os.environ["JOB_WORKERS"] = "0"
    try:
        with open(workdir / "server.log", "wb") as out:
            proc = start_local(out, workdir)
    finally:
        os.environ.pop("JOB_WORKERS") if saved is None else os.environ.__setitem__("JOB_WORKERS", saved)
    rates: dict[int, list[float]] = {1: [], 2: []}
    bare: dict[int, list[float]] = {1: [], 2: []}
    try:
        endpoints_file = workdir / ".local" / "endpoints.json"
        endpoints = wait_ready(proc, endpoints_file, timeout=90)
        stack_pids = [proc.pid, *children(proc.pid)]  # the API and moto: SQS and S3 are on our 2 cores
        mlp = Mlp.random(n_in=256, hidden=4096, n_out=16, seed=1)
        _land(endpoints, "models/bench-mlp.onnx", mlp.onnx_bytes())
        x = np.random.default_rng(2).standard_normal((args.jobs_rows, 256)).astype(np.float32)
        _land(endpoints, "inputs/bench-rows.npy", npy(x))
        rows_file = str(workdir / "bench-rows.npy")  # the same rows for the bare baseline
        np.save(rows_file, x)
        _land(endpoints, WARM_INPUT, npy(x[:16]))
        body = {"model": "bench-mlp.onnx", "input": "inputs/bench-rows.npy", "batchSize": args.jobs_batch}
        for i in range(args.jobs_repeat):
            for workers in (1, 2):
                # The lone worker alternates between the CPUs: other work on the machine is not spread evenly.
                rate, stack_cpu = _run_job(endpoints_file, endpoints, workers, body, i, stack_pids)
                log(f"  run {i + 1}, {workers} worker(s): {rate:,.0f} rows/s (API + moto: {stack_cpu:.2f} CPU-s)")
                rates[workers].append(rate)
                bare[workers].append(_bare_rate(mlp.onnx_bytes(), workers, rows_file, args.jobs_batch, first_cpu=i))
    finally:
        stop(proc, set())
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    ratio = two / one if one else 0.0
    ceiling = statistics.median(bare[2]) / statistics.median(bare[1])
    return [
        Row(
            "11",
            f"batch job rows/s, {args.jobs_rows:,} rows of 256 floats in blocks of {args.jobs_batch} (MLP 256-4096-16)",
            f"{two:,.0f} rows/s (2 workers)",
            f"{one:,.0f} rows/s (1 worker)",
            f"{ratio:.2f}x (bare onnxruntime, same run: {ceiling:.2f}x)",
            f">= {TARGET}x",
            ratio >= TARGET,
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs-rows", type=int, default=32000, help="rows of the job's input (default: %(default)s)")
    parser.add_argument("--jobs-batch", type=int, default=1000, help="rows per block (default: %(default)s)")
    parser.add_argument(
        "--jobs-repeat", type=int, default=4, help="alternating runs at 1 and 2 workers (default: %(default)s)"
    )


BENCHMARK = Benchmark(
    "11",
    "batch job scaling (local workers)",
    run,
    add_arguments,
    notes=(
        "10: python -m scripts.local (moto S3+SQS), JOB_WORKERS=0; each run starts 1 or 2 `python -m devstack.jobs`",
        "    workers, one CPU each; rows/s from the job's startedAt -> finishedAt (assembly and archive included);",
        "    medians of the alternating runs. On a shared 2-core machine every worker competes with other work:",
        "    beside it, the same model's scaling as bare pinned onnxruntime processes (one intra-op thread, as a",
        "    pinned worker's session) sharing the same rows in the same blocks, measured in between. Local SQS",
        "    and S3 (moto) share the 2 cores; each run logs the CPU-s the stack (API + moto) spent in it.",
    ),
)
