"""Row 4: ``import app`` vs ``import boto3, chalice.app`` in fresh interpreters."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from bench.common import PROJECT, Benchmark, Context, Row, ms

IMPORT_CODE = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def import_time(stmt: str) -> float:
    """Seconds ``stmt`` takes in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_CODE.format(stmt=stmt)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return float(out.stdout.strip())


def row_import(ctx: Context) -> list[Row]:
    """Median import time of the app against its two heavy dependencies alone."""
    rounds = ctx.args.import_rounds
    ours, base = [], []
    import_time("import app")  # compile .pyc files once, outside the measurement
    for _ in range(rounds):
        base.append(import_time("import boto3, chalice.app"))
        ours.append(import_time("import app"))
    o, b = statistics.median(ours), statistics.median(base)
    return [
        Row(
            "4",
            f"import time, fresh interpreter, median of {rounds}",
            ms(o),
            ms(b),
            f"{o / b:.2f}x",
            "<= 1.15x",
            o / b <= 1.15,
        )
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import-rounds", type=int, default=15, help="rounds of each side (default: %(default)s)")


BENCHMARK = Benchmark(
    "4",
    "import time",
    row_import,
    add_arguments,
    notes=("4: time of the import statement alone in a fresh interpreter (.pyc compiled beforehand).",),
)
