"""What every benchmark module shares: the row type, timing helpers, the service's environment."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

PROJECT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
GIB = 1024 * MIB
BUCKET = "bench"


@dataclass
class Row:
    """One line of the table."""

    number: str
    what: str
    ours: str
    baseline: str
    result: str
    target: str
    ok: bool | None


@dataclass
class Context:
    """Where a benchmark runs: its options, the local S3 (if any) and scratch folders."""

    args: argparse.Namespace
    endpoint: str | None
    disk: str
    shm: str


@dataclass(frozen=True)
class Benchmark:
    """One module of the table: its rows' number, options and runner.

    ``run`` returns the module's rows; ``notes`` are printed under the
    table. ``needs_s3`` starts a moto server for the run.
    """

    number: str
    title: str
    run: Callable[[Context], list[Row]]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    needs_s3: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def log(message: str) -> None:
    """Progress, on stderr (stdout carries only the table)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    """Seconds as milliseconds, with more digits below 10 ms."""
    return f"{seconds * 1000:.3f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


@contextlib.contextmanager
def quiet_stdout(stderr_too: bool = False) -> Iterator[None]:
    """Send the service's JSON logs/EMF lines (stdout, as in Lambda) to /dev/null,
    and with ``stderr_too`` the local server's per-request access log."""
    saved = sys.stdout, sys.stderr
    with open(os.devnull, "w") as null:
        sys.stdout = null
        if stderr_too:
            sys.stderr = null
        try:
            yield
        finally:
            sys.stdout, sys.stderr = saved


def service_env(efs_root: str, bucket: str | None, endpoint: str | None) -> None:
    """Point chalicelib at a store (and bucket), forgetting cached settings."""
    os.environ["EFS_ROOT"] = efs_root
    os.environ.pop("MODEL_BUCKET", None)
    if bucket:
        os.environ["MODEL_BUCKET"] = bucket
    if endpoint:
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from chalicelib import edge

    edge.reset()


def ensure_bucket(endpoint: str) -> None:
    """Create the benchmark bucket on the local S3 unless it exists."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``fn``."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


class TimedElsewhere(Protocol):
    """Something timed in another process (``bench.bare.BareSession``)."""

    def timed(self, n: int) -> list[float]: ...


def interleaved(
    fns: dict[str, Callable[[], Any] | TimedElsewhere], n: int, block: int = 50, settle: float = 0.0
) -> dict[str, list[float]]:
    """Time each callable ``n`` times (or have it time itself, ``timed(n)``),
    alternating in blocks so noise is shared.

    ``settle``: seconds of idle before each block, so that what one block
    leaves running (onnxruntime's intra-op threads spin for a while after a
    run) does not take the cores from the next block's first calls."""

    def run(fn: Callable[[], Any] | TimedElsewhere, k: int) -> list[float]:
        return fn.timed(k) if hasattr(fn, "timed") else timed(fn, k)  # type: ignore[union-attr, arg-type]

    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        run(fn, 20)
    done = 0
    while done < n:
        step = min(block, n - done)
        for name, fn in fns.items():
            if settle:
                time.sleep(settle)
            samples[name].extend(run(fn, step))
        done += step
    return samples
