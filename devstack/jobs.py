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
* :func:`start_dead_letter_poller`: the same for the DLQ and
  ``fail_dead_blocks``, which records on the job a block whose every
  delivery ended without an answer.
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
DEAD_LETTER_HANDLER = "fail_dead_blocks"
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
    """Drives a handler from a queue as the event source mapping does:
    ``run_job_blocks`` from the jobs queue, or ``fail_dead_blocks`` from its DLQ."""

    def __init__(
        self,
        app_obj: Any,
        queue_url: str,
        queue_arn: str,
        batch_size: int = 1,
        wait: int = 1,
        handler: str = HANDLER,
    ) -> None:
        import boto3
        from chalice.test import Client

        self.sqs = boto3.client("sqs")
        self.queue_url, self.queue_arn = queue_url, queue_arn
        self.batch_size, self.wait, self.handler = batch_size, wait, handler
        self.client = Client(app_obj, stage_name="local", project_dir=str(PROJECT_DIR))
        self.stopping = threading.Event()
        self.deleter: Deleter | None = None

    def poll_once(self) -> int:
        """One receive and its invocation; how many messages were handled (deleted,
        or handed to :attr:`deleter` when :meth:`run` drives the poller)."""
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
            payload = self.invoke(event)
        except Exception:  # the whole batch fails: every message comes back
            log.exception("%s invocation failed; %d message(s) will be redelivered", self.handler, len(got))
            return 0
        failed = {f["itemIdentifier"] for f in (payload or {}).get("batchItemFailures", [])}
        done = [m["ReceiptHandle"] for m in got if m["MessageId"] not in failed]
        if self.deleter is not None:
            self.deleter.add(done)
        elif done:
            delete_messages(self.sqs, self.queue_url, done)
        return len(done)

    def invoke(self, event: dict[str, Any]) -> Any:
        """The handler's answer to ``event``, as Lambda would invoke it."""
        return self.client.lambda_.invoke(self.handler, event).payload

    def run(self) -> None:
        """Poll until :attr:`stopping` is set; the deletes are sent in the background."""
        self.deleter = Deleter(self.sqs, self.queue_url).start()
        try:
            while not self.stopping.is_set():
                try:
                    self.poll_once()
                except Exception:  # SQS unreachable for a moment: try again
                    log.exception("job poller receive failed")
                    self.stopping.wait(1.0)
        finally:
            self.deleter.stop()
            self.deleter = None


def delete_messages(sqs: Any, queue_url: str, handles: list[str]) -> None:
    """DeleteMessageBatch of ``handles``, ten (SQS's most per call) at a time."""
    for i in range(0, len(handles), 10):
        chunk = handles[i : i + 10]
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(j), "ReceiptHandle": h} for j, h in enumerate(chunk)]
        )


class Deleter:
    """Deletes handled messages off the worker's path, as the event source
    mapping does (its pollers, not the function, delete), batching what
    accumulates within ``linger`` seconds into one DeleteMessageBatch.

    Why: locally, SQS is moto on the same two cores as the workers, and a
    request costs it ~4 ms of CPU (measured); a delete per block, sent in
    the block's path, both delays the next receive and takes CPU from the
    other worker. A handle not yet deleted when the process is killed
    comes back after the visibility timeout and is a repeat (idempotent).
    """

    def __init__(self, sqs: Any, queue_url: str, linger: float = 0.25) -> None:
        self.sqs, self.queue_url, self.linger = sqs, queue_url, linger
        self.pending: list[str] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="sqs-deleter", daemon=True)

    def start(self) -> Deleter:
        self.thread.start()
        return self

    def add(self, handles: list[str]) -> None:
        """Queue ``handles`` for deletion (sent within ``linger`` seconds, or at once past ten)."""
        with self.cond:
            self.pending.extend(handles)
            if len(self.pending) >= 10:
                self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.stopped or len(self.pending) >= 10, timeout=self.linger)
                batch, self.pending = self.pending, []
                stopped = self.stopped
            if batch:
                try:
                    delete_messages(self.sqs, self.queue_url, batch)
                except Exception:  # they come back after the visibility timeout, as repeats
                    log.exception("could not delete %d handled message(s)", len(batch))
            if stopped:
                return

    def stop(self) -> None:
        """Send what is pending and end the thread."""
        with self.cond:
            self.stopped = True
            self.cond.notify()
        self.thread.join(30)


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


def start_dead_letter_poller(app_obj: Any, queues: dict[str, str]) -> tuple[Poller, threading.Thread]:
    """The DLQ's event source mapping: a thread that runs ``fail_dead_blocks``
    on the dead letters (batches of up to 10, as infra/jobs.tf maps it). It
    runs beside the API, not in a job worker: on AWS it is its own function,
    alive when every job worker is killed."""
    # Long polls of 2 s: an idle DLQ costs moto (on the workers' cores) one receive per 2 s.
    poller = Poller(
        app_obj, queues["job_dlq_url"], queues["job_dlq_arn"], batch_size=10, wait=2, handler=DEAD_LETTER_HANDLER
    )
    thread = threading.Thread(target=poller.run, name="dead-letter-poller", daemon=True)
    thread.start()
    return poller, thread


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


def main(argv: list[str] | None = None, poller_class: type[Poller] = Poller) -> int:
    """One local worker process: poll the jobs queue of a running ``make local`` until SIGTERM
    (``poller_class``: the fault tests' worker that dies on a delivery)."""
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
    poller = poller_class(app_obj, endpoints["job_queue_url"], endpoints["job_queue_arn"])

    def stop(signum: int, frame: FrameType | None) -> None:
        poller.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
