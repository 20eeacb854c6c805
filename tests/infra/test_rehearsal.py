"""The local deployment rehearsal (make deploy-local) and the bucket emptying of make destroy."""

from __future__ import annotations

import json
import sys

import boto3
import pytest

from infra import empty_bucket
from infra.local import rehearsal


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
    assert "the API stage writes its access log to the retained, KMS-encrypted group" in report.checks
    assert "the S3 handler alarms on undeliverable and dropped events" in report.checks
    assert "infra/empty_bucket.py switched the bucket notification off" in report.checks
    assert "run_job_blocks reads the jobs queue: at most 10 at once, partial batch failures" in report.checks
    assert "jobs queue and DLQ are encrypted; a block goes to the DLQ after 3 receives" in report.checks
    assert "fail_dead_blocks reads the jobs DLQ: at most 2 at once, partial batch failures" in report.checks
    assert "the jobs DLQ has alarms (letters received, letters left)" in report.checks
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


def _removal_events(sqs, queue_url) -> list[str]:
    """The ObjectRemoved events the queue received (moto's s3:TestEvent aside)."""
    names = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return names
        for m in messages:
            body = json.loads(m["Body"])
            names += [r["eventName"] for r in body.get("Records", []) if r["eventName"].startswith("ObjectRemoved")]
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture
def notifying_bucket(s3_client, moto_server):
    """A versioned bucket whose ObjectRemoved events go to an SQS queue (moto delivers those)."""
    sqs = boto3.client("sqs", endpoint_url=moto_server.endpoint)
    queue_url = sqs.create_queue(QueueName="teardown-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = "teardown"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3_client.put_object(Bucket=bucket, Key="models/m.onnx", Body=b"1")
    s3_client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectRemoved:*"]}]},
    )
    _removal_events(sqs, queue_url)
    return bucket, sqs, queue_url


def test_emptying_a_bucket_with_a_live_notification_fires_removal_events(s3_client, notifying_bucket):
    """What make destroy used to do: each deleted version is an event (here: to a queue; on AWS: the function)."""
    bucket, sqs, queue_url = notifying_bucket
    assert empty_bucket.empty_bucket(s3_client, bucket) == 1
    assert _removal_events(sqs, queue_url) == ["ObjectRemoved:Delete"]


def test_make_destroy_switches_the_notification_off_before_emptying(s3_client, notifying_bucket):
    bucket, sqs, queue_url = notifying_bucket
    assert empty_bucket.teardown(s3_client, bucket) == 1
    assert _removal_events(sqs, queue_url) == []
    config = s3_client.get_bucket_notification_configuration(Bucket=bucket)
    assert not config.get("QueueConfigurations") and not config.get("LambdaFunctionConfigurations")
    assert not s3_client.list_object_versions(Bucket=bucket).get("Versions")
