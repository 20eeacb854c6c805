"""infra/replay_failed_events.py against a real (moto) SQS queue; Lambda's invoke through botocore's Stubber.

moto runs no Lambda code here, so the Lambda client is a real boto3 client
whose ``invoke`` is stubbed: botocore still validates every call against the
service model.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.stub import Stubber

from infra import replay_failed_events as replay

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:efs-ml-dev-on_object_created:live"


def s3_event(key: str) -> dict:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "efs-ml-dev-models"}, "object": {"key": key, "size": 3}},
            }
        ]
    }


def destination_record(key: str, condition: str = "RetriesExhausted") -> str:
    """The message Lambda sends to an on_failure destination."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-11-25T22:00:00.000Z",
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": FUNCTION,
                "condition": condition,
                "approximateInvokeCount": 3,
            },
            "requestPayload": s3_event(key),
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "RetryableEventError", "errorMessage": "1 of 1 records failed"},
        }
    )


@pytest.fixture
def queue(moto_server):
    sqs = boto3.client("sqs", endpoint_url=moto_server.endpoint)
    url = sqs.create_queue(QueueName=f"failed-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return sqs, url


def remaining(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    return sum(int(v) for v in attributes["Attributes"].values())


def test_replay_reinvokes_the_alias_with_the_original_event_and_deletes(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=destination_record("models/a.onnx"))
    sqs.send_message(QueueUrl=url, MessageBody=destination_record("inputs/x.json", "EventAgeExceeded"))
    lam = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lam) as stub:
        for key in ("models/a.onnx", "inputs/x.json"):
            stub.add_response(
                "invoke",
                {"StatusCode": 202},
                {"FunctionName": FUNCTION, "InvocationType": "Event", "Payload": json.dumps(s3_event(key)).encode()},
            )
        result = replay.replay(sqs, lam, url, log=lambda _: None)
        stub.assert_no_pending_responses()
    assert (result.replayed, result.kept, result.problems) == (2, 0, [])
    assert sorted(result.keys) == ["efs-ml-dev-models/inputs/x.json", "efs-ml-dev-models/models/a.onnx"]
    assert remaining(sqs, url) == 0


def test_replay_keeps_what_it_cannot_replay(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    sqs.send_message(QueueUrl=url, MessageBody=destination_record("models/b.onnx"))
    lam = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lam) as stub:
        stub.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(lam.exceptions.TooManyRequestsException):
            replay.replay(sqs, lam, url, log=lambda _: None)
    # Neither message was deleted: the bad one is kept, the throttled one is retried later.
    assert remaining(sqs, url) == 2


def test_dry_run_changes_nothing(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=destination_record("models/c.onnx"))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"requestContext": {}}))
    lam = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lam):  # any invoke would fail: no response is queued
        result = replay.replay(sqs, lam, url, dry_run=True, log=lambda _: None)
    assert (result.replayed, result.kept, result.keys) == (0, 2, ["efs-ml-dev-models/models/c.onnx"])
    assert len(result.problems) == 1 and "not a Lambda destination record" in result.problems[0]
    assert remaining(sqs, url) == 2
