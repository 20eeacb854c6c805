"""Switch off the stack bucket's event notification, then delete every object
version and delete marker from it.

Build-time code for ``make destroy``.  The bucket is versioned and
``force_destroy`` is off by default, so ``terraform destroy`` would stop at a
non-empty bucket; emptying it first makes cleanup one command.  The
notification goes first: while it is live, every deletion of a models/ or
inputs/ key invokes the S3-event function mid-teardown (and its
ObjectRemoved handling works on a store that is about to go).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import boto3

from infra.tfcli import build_dir_of, cli_env, terraform


def remove_notifications(s3: Any, bucket: str) -> None:
    """Remove every event notification of ``bucket`` (Terraform's destroy would, but only after the emptying)."""
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})


def teardown(s3: Any, bucket: str) -> int:
    """What ``make destroy`` does to the bucket before ``terraform destroy``:
    notifications off first, then every version deleted; returns how many."""
    remove_notifications(s3, bucket)
    return empty_bucket(s3, bucket)


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete all versions and delete markers of ``bucket``; return how many were deleted."""
    deleted = 0
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        doomed = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        # A page holds at most 1000 entries, DeleteObjects' limit.
        if doomed:
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
            if result.get("Errors"):
                raise RuntimeError(f"could not delete from {bucket}: {result['Errors'][:5]}")
            deleted += len(doomed)
    return deleted


def main(argv: list[str] | None = None) -> int:
    """Command line: read the bucket name and region from the stack's outputs, then tear its bucket down."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=Path("build/stacks/dev"))
    args = parser.parse_args(argv)
    env = cli_env(build_dir_of(args.stack))
    outputs = json.loads(terraform(["output", "-json"], args.stack, env).stdout)
    if "s3_bucket_name" not in outputs:
        print("empty_bucket: the stack has no s3_bucket_name output (not deployed?); nothing to empty")
        return 0
    bucket, region = outputs["s3_bucket_name"]["value"], outputs["region"]["value"]
    s3 = boto3.client("s3", region_name=region)
    try:
        count = teardown(s3, bucket)
    except s3.exceptions.NoSuchBucket:
        print(f"empty_bucket: {bucket} is already gone")
        return 0
    print(f"empty_bucket: notifications off, deleted {count} object versions/delete markers from {bucket}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
