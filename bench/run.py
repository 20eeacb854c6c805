"""`make bench`: the service's fast paths, each beside its baseline, in one table.

Every figure is measured in this run, interleaved with its baseline so that
machine noise hits both alike. One module per benchmark (bench/<name>.py,
each with a ``BENCHMARK``); adding one is one line in ``BENCHMARKS``.

    python -m bench.run [--rows 2,4] [--warm-n 200] ...

Progress goes to stderr; the table is the only thing on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

from bench import cold, cold_efs, efs_rpcs, imports, ingest_ranged, jobs, keepalive, protocol, warm
from bench.common import Benchmark, Context, Row, log, quiet_stdout
from bench.table import render

#: Run in this order (cheap ones first); the table is sorted by row number.
BENCHMARKS: tuple[Benchmark, ...] = (
    imports.BENCHMARK,
    warm.BENCHMARK,
    protocol.BENCHMARK,
    cold.BENCHMARK,
    keepalive.BENCHMARK,
    efs_rpcs.BENCHMARK,
    ingest_ranged.BENCHMARK,
    jobs.BENCHMARK,
    cold_efs.BENCHMARK,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description=(__doc__ or "").splitlines()[0])
    numbers = ",".join(sorted((b.number for b in BENCHMARKS), key=lambda n: (len(n), n)))
    parser.add_argument("--rows", default=numbers, help="comma-separated rows to run (default: %(default)s)")
    for bench in BENCHMARKS:
        bench.add_arguments(parser.add_argument_group(f"row {bench.number}: {bench.title}"))  # type: ignore[arg-type]
    args = parser.parse_args(argv)
    unknown = set(args.rows.split(",")) - {b.number for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown row(s): {', '.join(sorted(unknown))}; rows are {numbers}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and print the table; 1 if a target was missed."""
    args = parse_args(argv)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    chosen = [b for b in BENCHMARKS if b.number in set(args.rows.split(","))]
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    from devstack.moto import MotoServer

    moto = MotoServer().start() if any(b.needs_s3 for b in chosen) else None
    disk = tempfile.mkdtemp(prefix="efs-ml-bench-", dir=os.environ.get("BENCH_DISK_DIR"))
    shm = tempfile.mkdtemp(prefix="efs-ml-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ctx = Context(args, moto.endpoint if moto else None, disk, shm)
    rows: list[Row] = []
    try:
        with quiet_stdout():  # the table alone goes to stdout
            for bench in chosen:
                log(f"row {bench.number}: {bench.title}")
                rows.extend(bench.run(ctx))
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(disk, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    rows.sort(key=lambda r: (len(r.number), r.number))  # 2 before 10
    notes = [n for b in sorted(chosen, key=lambda b: b.number) for n in b.notes]
    print(render(rows, notes, time.perf_counter() - started, load_before))
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
