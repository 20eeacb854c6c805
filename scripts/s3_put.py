"""`make s3-put FILE=... KEY=...`: put a file into the local bucket of a running `make local`.

    python -m scripts.s3_put FILE KEY [--endpoints .local/endpoints.json]

KEY is ``models/<name>`` or ``inputs/<name>``. The local stack's event watcher
then delivers the S3 event, as S3 would, and the object is ingested; or
ingest it explicitly with ``POST /ingest {"key": KEY}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.names import parse_key

PROJECT_DIR = Path(__file__).resolve().parent.parent


def local_s3(endpoints: dict[str, Any]) -> Any:
    """A boto3 S3 client for the local stack's moto server (from its endpoints file)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoints["s3_endpoint"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _running(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    """Upload FILE as KEY; 1 with a one-line message when it cannot."""
    parser = argparse.ArgumentParser(prog="make s3-put", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path, help="the file to upload")
    parser.add_argument("key", help="models/<name> or inputs/<name>")
    parser.add_argument(
        "--endpoints",
        type=Path,
        default=PROJECT_DIR / ".local" / "endpoints.json",
        help="the running stack's endpoints file (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        ref = parse_key(args.key, "KEY")
    except InvalidRequest as exc:
        print(f"s3-put: {exc.message}", file=sys.stderr)
        return 1
    if not args.file.is_file():
        print(f"s3-put: no such file: {args.file}", file=sys.stderr)
        return 1
    try:
        endpoints = json.loads(args.endpoints.read_text())
    except (OSError, ValueError):
        endpoints = {}
    if not _running(endpoints.get("pid")):
        print(
            f"s3-put: no running `make local` ({args.endpoints} is missing or stale); start it first", file=sys.stderr
        )
        return 1
    s3 = local_s3(endpoints)
    s3.upload_file(str(args.file), endpoints["bucket"], ref.key)
    size = args.file.stat().st_size
    print(
        f"put {args.file} ({size} bytes) as s3://{endpoints['bucket']}/{ref.key}; "
        f"the local S3 event ingests it: curl {endpoints['api_url']}/models/{ref.name}"
        if ref.kind == "models"
        else f"put {args.file} ({size} bytes) as s3://{endpoints['bucket']}/{ref.key}; the local S3 event ingests it"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
