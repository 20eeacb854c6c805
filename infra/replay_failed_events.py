"""Replay the S3 events that landed in the stack's failed-events queue.

Operator tool (``make replay-failed``), never in the Lambda package.  Lambda
sends an S3 event to the queue when the function failed it on every retry or
could not start it within the maximum event age (infra/monitoring.tf).  Each
message is Lambda's destination record::

    {"requestContext": {"functionArn": "...:function:NAME:live",
                        "condition": "RetriesExhausted" | "EventAgeExceeded", ...},
     "requestPayload": <the original S3 event>,
     "responsePayload": {"errorType": ..., "errorMessage": ...}, ...}

Replaying re-invokes the same function and alias asynchronously with the
original event, then deletes the message.  The event takes the normal path
again (retries, then the queue), so a replay that fails again is not lost,
and records already ingested report ``exists``: replaying twice is harmless.
A message that is not such a record is left in the queue and reported.

Usage::

    python -m infra.replay_failed_events --stack build/stacks/dev [--dry-run] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import boto3

from infra.tfcli import build_dir_of, cli_env, terraform

# Long enough to invoke and delete a batch; a message not deleted in time
# (a crash of this tool) is simply received again later.
VISIBILITY_SECONDS = 60


@dataclass
class ReplayResult:
    """What a replay did: messages replayed, left in the queue, and the keys involved."""

    replayed: int = 0
    kept: int = 0
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse_record(body: str) -> tuple[str, dict[str, Any], str]:
    """``(function ARN, original event, condition)`` of one destination record; ValueError if it is not one."""
    try:
        record = json.loads(body)
        function = record["requestContext"]["functionArn"]
        event = record["requestPayload"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Lambda destination record ({type(exc).__name__}: {exc})") from None
    if not isinstance(function, str) or not isinstance(event, dict) or not event.get("Records"):
        raise ValueError("not a Lambda destination record of an S3 event")
    return function, event, str(record["requestContext"].get("condition", "?"))


def event_keys(event: dict[str, Any]) -> list[str]:
    """``bucket/key`` of every record of an S3 event (keys as S3 sent them, URL-encoded)."""
    return [
        f"{r.get('s3', {}).get('bucket', {}).get('name', '?')}/{r.get('s3', {}).get('object', {}).get('key', '?')}"
        for r in event.get("Records", [])
    ]


def replay(
    sqs: Any,
    lam: Any,
    queue_url: str,
    dry_run: bool = False,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> ReplayResult:
    """Re-invoke the function of every message in ``queue_url`` with its original event, then delete it.

    With ``dry_run`` nothing is invoked or deleted (messages become visible
    again after VISIBILITY_SECONDS).  Stops when the queue yields nothing new
    or after ``limit`` messages.
    """
    result = ReplayResult()
    seen: set[str] = set()
    while limit is None or result.replayed + result.kept < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=VISIBILITY_SECONDS
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            if limit is not None and result.replayed + result.kept >= limit:
                break
            seen.add(message["MessageId"])
            try:
                function, event, condition = parse_record(message["Body"])
            except ValueError as exc:
                result.kept += 1
                result.problems.append(f"{message['MessageId']}: {exc}")
                log(f"replay: kept {message['MessageId']}: {exc}")
                continue
            keys = event_keys(event)
            result.keys.extend(keys)
            if dry_run:
                result.kept += 1
                log(f"replay: would re-invoke {function} ({condition}) for {', '.join(keys)}")
                continue
            response = lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode())
            if response.get("StatusCode") != 202:
                result.kept += 1
                result.problems.append(f"{message['MessageId']}: invoke answered {response.get('StatusCode')}")
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            result.replayed += 1
            log(f"replay: re-invoked {function} ({condition}) for {', '.join(keys)}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: read the queue URL and region from the stack's outputs, then replay."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, default=Path("build/stacks/dev"))
    parser.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")
    parser.add_argument("--limit", type=int, default=None, help="replay at most this many messages")
    args = parser.parse_args(argv)
    outputs = json.loads(terraform(["output", "-json"], args.stack, cli_env(build_dir_of(args.stack))).stdout)
    if "failed_events_queue_url" not in outputs:
        print("replay: the stack has no failed_events_queue_url output (not deployed?)", file=sys.stderr)
        return 1
    queue_url, region = outputs["failed_events_queue_url"]["value"], outputs["region"]["value"]
    result = replay(
        boto3.client("sqs", region_name=region),
        boto3.client("lambda", region_name=region),
        queue_url,
        dry_run=args.dry_run,
        limit=args.limit,
    )
    print(f"replay: {result.replayed} replayed, {result.kept} left in the queue")
    for problem in result.problems:
        print(f"replay: {problem}", file=sys.stderr)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
