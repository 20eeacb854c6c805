#!/usr/bin/env python3
"""Validate a deployment end to end, or the local stack of `make local`.

    python demonstration.py --config outputs.json   # terraform output -json > outputs.json
    python demonstration.py --local                 # reads .local/endpoints.json

Runs every documented path of the API (ingest inline and by S3 key, a
presigned upload landed by the S3 event, predict with an opaque and an
ONNX model, every documented error), checks each answer against the
contract, prints a live table, and writes demonstration_results.json and
demonstration_summary.txt. Exits 1 if any step failed, 2 if the target
could not be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from demo import report
from demo.client import ApiClient
from demo.target import TargetError, from_local, from_outputs
from demo.workflow import Demonstration

PROJECT_DIR = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", metavar="OUTPUTS_JSON", help="Terraform outputs (terraform output -json)")
    where.add_argument("--local", action="store_true", help="the `make local` stack (.local/endpoints.json)")
    p.add_argument(
        "--endpoints",
        default=str(PROJECT_DIR / ".local" / "endpoints.json"),
        help="endpoints file for --local (default: %(default)s)",
    )
    p.add_argument("--large-mb", type=int, default=16, help="size of the presigned upload in MiB (default: 16)")
    p.add_argument("--warm-repeats", type=int, default=5, help="warm predicts per model (default: 5)")
    p.add_argument(
        "--land-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the S3 event to land an upload (default: 120)",
    )
    p.add_argument("--results", default="demonstration_results.json")
    p.add_argument("--summary", default="demonstration_summary.txt")
    args = p.parse_args(argv)
    if args.large_mb < 1 or args.warm_repeats < 1 or args.land_timeout <= 0:
        p.error("--large-mb and --warm-repeats must be >= 1, --land-timeout > 0")
    return args


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv: list[str] | None = None) -> int:
    """Run the demonstration; the exit status says whether every step passed."""
    args = parse_args(argv)
    try:
        target = from_local(args.endpoints) if args.local else from_outputs(args.config)
    except TargetError as exc:
        print(f"demonstration: {exc}", file=sys.stderr)
        return 2
    client = ApiClient(target)
    started = _now()
    try:
        demo = Demonstration(
            client,
            large_bytes=args.large_mb * 1024 * 1024,
            warm_repeats=args.warm_repeats,
            land_timeout=args.land_timeout,
        )
        demo.run()
    finally:
        client.close()
    doc = report.results_document(demo, started, _now())
    text = report.write(doc, Path(args.results), Path(args.summary))
    print()
    print(text, end="")
    print(f"Wrote {args.results} and {args.summary}")
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
