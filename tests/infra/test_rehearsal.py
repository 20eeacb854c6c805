"""The local deployment rehearsal (make deploy-local) and the bucket emptying of make destroy."""

from __future__ import annotations

import sys

import empty_bucket
import rehearsal


def test_rehearsal_apply_verify_replan_destroy(packaged_stack, build_dir):
    """Apply to moto, check the wiring with boto3, no-change plan, empty the bucket, destroy, nothing left."""
    report = rehearsal.rehearse(packaged_stack, build_dir / "rehearsal", python=sys.executable, log=lambda _: None)
    assert "second plan: no changes" in report.checks
    assert report.checks[-1].startswith("nothing left after destroy")
    assert any("mounts the access point at /mnt/efs" in c for c in report.checks)
    assert "bucket policy refuses requests without TLS" in report.checks
    assert "S3 events: 2 retries, 3 h maximum age, then the failed-events queue" in report.checks
    assert "every function runs the uploaded package (CodeSha256)" in report.checks
    assert "gateway responses come from the API body" in report.checks
    assert "run_job_blocks reads the jobs queue: at most 10 at once, partial batch failures" in report.checks
    assert "jobs queue and DLQ are encrypted; a block goes to the DLQ after 3 receives" in report.checks
    assert "the jobs DLQ has an alarm" in report.checks
    assert "the hourly sweep's rule invokes its live alias" in report.checks
    assert any(c.startswith("infra/empty_bucket.py deleted every version") for c in report.checks)
    # demonstration.py --config reads this stack's URL, bucket and key from the real outputs.
    assert "client target: sends the deployed API key" in report.checks
    print(f"rehearsal: {report.resources} resources, seconds per step:", report.timings)


def test_empty_bucket_deletes_every_version_and_marker(s3_client):
    bucket = "empty-me"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2"):
        s3_client.put_object(Bucket=bucket, Key="models/m.onnx", Body=body)
    s3_client.delete_object(Bucket=bucket, Key="models/m.onnx")  # adds a delete marker
    assert empty_bucket.empty_bucket(s3_client, bucket) == 3
    listing = s3_client.list_object_versions(Bucket=bucket)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")
    s3_client.delete_bucket(Bucket=bucket)  # S3 refuses this unless truly empty
