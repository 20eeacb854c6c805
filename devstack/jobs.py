"""The local stand-in for Lambda's SQS event source mapping (``make local``).

* :func:`create_queues`: the jobs queue and its dead-letter queue on the
  local moto server (which serves SQS as well as S3), with the same redrive
  policy as infra/jobs.tf: after ``maxReceiveCount`` receives, moto moves a
  message to the DLQ, as SQS does.
* :class:`Poller`: receives a batch (long polling), invokes the real
  ``run_job_blocks`` handler with the event Lambda would send (message
  attributes included: the worker reads ``ApproximateReceiveCount``), deletes
  the messages that succeeded, and leaves the ``batchItemFailures`` (or the
  whole batch, if the handler raised) to become visible again after the
  visibility timeout.
* ``python -m devstack.jobs --endpoints .local/endpoints.json``: one worker
  process, as one Lambda execution environment is; ``make local`` starts
  JOB_WORKERS of them, each pinned to one CPU (a Lambda function's vCPUs
  are its own).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
QUEUE_NAME = "efs-ml-jobs"
HANDLER = "run_job_blocks"
log = logging.getLogger(__name__)


def create_queues(sqs: Any, max_receive_count: int, visibility_timeout: int, name: str = QUEUE_NAME) -> dict[str, str]:
    """Create the queue and its DLQ (idempotent); their URLs and ARNs."""
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    url = sqs.create_queue(
        QueueName=name,
        Attributes={"VisibilityTimeout": str(visibility_timeout), "RedrivePolicy": redrive},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"job_queue_url": url, "job_queue_arn": arn, "job_dlq_url": dlq_url, "job_dlq_arn": dlq_arn}


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS mapping delivers for ``messages`` (ReceiveMessage's shape)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": m.get("MessageAttributes", {}),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class Poller:
    """Drives ``run_job_blocks`` from the queue as the event source mapping does."""

    def __init__(self, app_obj: Any, queue_url: str, queue_arn: str, batch_size: int = 1, wait: int = 1) -> None:
        import boto3
        from chalice.test import Client

        self.sqs = boto3.client("sqs")
        self.queue_url, self.queue_arn = queue_url, queue_arn
        self.batch_size, self.wait = batch_size, wait
        self.client = Client(app_obj, stage_name="local", project_dir=str(PROJECT_DIR))
        self.stopping = threading.Event()

    def poll_once(self) -> int:
        """One receive and its invocation; how many messages were handled (deleted)."""
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=self.wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            return 0
        event = sqs_event(got, self.queue_arn, self.sqs.meta.region_name)
        try:
            payload = self.client.lambda_.invoke(HANDLER, event).payload
        except Exception:  # the whole batch fails: every message comes back
            log.exception("job worker invocation failed; %d message(s) will be redelivered", len(got))
            return 0
        failed = {f["itemIdentifier"] for f in (payload or {}).get("batchItemFailures", [])}
        done = [m for m in got if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(done)

    def run(self) -> None:
        """Poll until :attr:`stopping` is set."""
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # SQS unreachable for a moment: try again
                log.exception("job poller receive failed")
                self.stopping.wait(1.0)


#: Local defaults: a short visibility timeout, so a failed block returns in seconds (Lambda: 6x the timeout).
VISIBILITY_TIMEOUT = int(os.environ.get("JOB_VISIBILITY_TIMEOUT") or 5)
DEFAULT_WORKERS = 2


def job_workers() -> int:
    """How many worker processes ``make local`` starts (JOB_WORKERS, default 2)."""
    raw = os.environ.get("JOB_WORKERS") or str(DEFAULT_WORKERS)
    if not raw.isdigit():
        raise ValueError(f"JOB_WORKERS must be a non-negative integer, got {raw!r}")
    return int(raw)


def configure_local_queues(endpoint: str) -> dict[str, str]:
    """Create the local queues on moto and point this process (the API) at them."""
    import boto3

    from chalicelib import edge

    os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint
    max_receive = int(os.environ.get("JOB_MAX_RECEIVE_COUNT") or 3)
    queues = create_queues(boto3.client("sqs"), max_receive, VISIBILITY_TIMEOUT)
    os.environ["JOB_QUEUE_URL"] = queues["job_queue_url"]
    edge.reset()  # app.py read them at import, before the queue existed
    return queues


class WorkerProcesses:
    """``count`` processes of ``python -m devstack.jobs``, worker i pinned to CPU i."""

    def __init__(self, endpoints_file: Path, count: int) -> None:
        self.endpoints_file, self.count = endpoints_file, count
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> WorkerProcesses:
        """Start the workers (their output goes to ours)."""
        from devstack.moto import _die_with_parent

        for i in range(self.count):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "devstack.jobs", "--endpoints", str(self.endpoints_file), "--cpu", str(i)],
                    cwd=PROJECT_DIR,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C of ours is delivered by stop(), after the API stops
                    preexec_fn=_die_with_parent,
                )
            )
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every worker (a block in progress finishes), SIGKILL after ``grace``."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    """One local worker process: poll the jobs queue of a running ``make local`` until SIGTERM."""
    parser = argparse.ArgumentParser(prog="devstack.jobs", description="a local job worker (make local starts these)")
    parser.add_argument("--endpoints", type=Path, default=Path(".local/endpoints.json"))
    parser.add_argument("--cpu", type=int, default=None, help="pin this worker to one CPU (a Lambda's own vCPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    endpoints = json.loads(args.endpoints.read_text())
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[args.cpu % len(cpus)]})
    os.environ.update(
        AWS_ENDPOINT_URL_S3=endpoints["s3_endpoint"],
        AWS_ENDPOINT_URL_SQS=endpoints["s3_endpoint"],
        JOB_QUEUE_URL=endpoints["job_queue_url"],
    )
    for var, value in (
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(var, value)
    from chalice.cli.factory import CLIFactory

    config = CLIFactory(str(PROJECT_DIR), environ=os.environ).create_config_obj(chalice_stage_name="local")
    app_obj = config.chalice_app
    # The stage's EFS_ROOT (.local/efs) is relative, and chalice.test.Client
    # applies it again around every invocation: resolve it where the stack does.
    os.chdir(args.endpoints.resolve().parent.parent)
    from chalicelib import edge

    edge.reset()  # app.py read them at import, before the lines above
    poller = Poller(app_obj, endpoints["job_queue_url"], endpoints["job_queue_arn"])

    def stop(signum: int, frame: FrameType | None) -> None:
        poller.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
