"""Bytes moved by duplicate S3 events for one object (issue 16, finding 5).

``N`` ObjectCreated events for one object reach the S3 handler at once
(threads, as concurrent Lambda invocations would), then ``N`` more one
after another. Streamed: the bytes ``chalicelib.s3.stream`` yielded (a
counting wrapper); written: this process's ``wchar`` (``/proc/self/io``),
the store's writes (log lines are off; the moto server is another
process). ::

    .venv/bin/python -m bench.duplicate_events [--mib 48] [--events 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import uuid
from collections import Counter
from typing import Any, Iterator
from urllib.parse import quote_plus

MIB = 1024 * 1024


def _written() -> int:
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["wchar"])


def _event(bucket: str, key: str) -> dict:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
            }
        ]
    }


def _deliver(handler: Any, event: dict, n: int, at_once: bool) -> Counter[str]:
    """``event`` to ``handler`` ``n`` times: all at once (threads), or in turn."""
    statuses: Counter[str] = Counter()
    barrier = threading.Barrier(n)

    def one(wait: bool) -> None:
        if wait:
            barrier.wait()
        for outcome in handler(event, None):
            statuses[outcome["status"]] += 1

    if at_once:
        threads = [threading.Thread(target=one, args=(True,)) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for _ in range(n):
            one(False)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=48)
    parser.add_argument("--events", type=int, default=4)
    args = parser.parse_args()

    import boto3

    from chalicelib import edge
    from devstack.moto import MotoServer

    server = MotoServer().start()
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as root:
            os.environ.update(
                EFS_ROOT=root,
                MODEL_BUCKET=bucket,
                AWS_ENDPOINT_URL_S3=server.endpoint,
                AWS_ACCESS_KEY_ID="bench",
                AWS_SECRET_ACCESS_KEY="bench",
                AWS_DEFAULT_REGION="us-east-1",
                LOG_LEVEL="ERROR",
            )
            edge.reset()
            s3 = boto3.client("s3", endpoint_url=server.endpoint)
            s3.create_bucket(Bucket=bucket)
            import app
            from chalicelib import s3 as s3_module

            streamed = [0]
            real_stream = s3_module.stream

            def counting(*a: Any, **k: Any) -> Iterator[Any]:
                for chunk in real_stream(*a, **k):
                    streamed[0] += len(chunk)
                    yield chunk

            s3_module.stream = counting  # type: ignore[assignment]

            for mode in ("concurrent", "sequential"):
                key = f"models/{mode}.bin"
                s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(args.mib * MIB))
                streamed[0], written0 = 0, _written()
                statuses = _deliver(app.on_object_created, _event(bucket, key), args.events, mode == "concurrent")
                written = _written() - written0
                print(
                    f"{mode:>10}: {args.events} events for one {args.mib} MiB object: "
                    f"streamed {streamed[0] / MIB:.1f} MiB, wrote {written / MIB:.1f} MiB, "
                    f"outcomes {dict(sorted(statuses.items()))}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
