"""One SQS message per block: ``{"jobId", "block"}``.

The client is boto3's, with the endpoint boto3 itself reads from
``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` (moto locally, the SQS
interface endpoint in the VPC), as the S3 code does. Messages go 10 per
``SendMessageBatch`` call, several calls in flight, so the 10,000 blocks
JOB_MAX_BLOCKS allows are queued in about a second.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.errors import ProcessingFailed

_BATCH = 10  # SendMessageBatch's limit
_PARALLEL = 8
_client: Any = None
_lock = threading.Lock()


def client() -> Any:
    """The process's SQS client (built once; boto3 clients are thread-safe)."""
    global _client
    with _lock:
        if _client is None:
            import boto3
            from botocore.config import Config

            _client = boto3.client(
                "sqs", config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=_PARALLEL)
            )
        return _client


def reset_client() -> None:
    """Forget the client (boto3 read its endpoint when it built it): part of :func:`chalicelib.edge.reset`."""
    global _client
    with _lock:
        _client = None


def message(job_id: str, block: int) -> str:
    """The body of block ``block``'s message."""
    return json.dumps({"jobId": job_id, "block": block}, separators=(",", ":"))


def send_blocks(queue_url: str, job_id: str, blocks: range) -> None:
    """Send one message per block; ProcessingFailed if any could not be sent."""
    sqs = client()
    chunks = [blocks[i : i + _BATCH] for i in range(0, len(blocks), _BATCH)]

    def send(chunk: range) -> list[str]:
        entries = [{"Id": str(b), "MessageBody": message(job_id, b)} for b in chunk]
        try:
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:  # noqa: BLE001 - botocore's errors, after its retries
            return [f"{chunk[0]}-{chunk[-1]}: {type(exc).__name__}"]
        return [f"{f['Id']}: {f.get('Code', 'error')}" for f in answer.get("Failed", [])]

    with ThreadPoolExecutor(max_workers=min(_PARALLEL, max(1, len(chunks)))) as pool:
        problems = [p for found in pool.map(send, chunks) for p in found]
    if problems:
        raise ProcessingFailed(
            f"SQS refused {len(problems)} batch(es) of block messages ({problems[0]}); job cancelled"
        )
