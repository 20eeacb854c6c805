"""`make local`: the whole service on this machine, with no AWS account.

* S3 is a moto server on loopback (started and stopped here), reached only
  through boto3's standard ``AWS_ENDPOINT_URL_S3``.
* The API is ``chalice local`` (stage ``local`` of .chalice/config.json),
  served with TCP_NODELAY: stock ``chalice local`` writes headers and body
  separately with Nagle's algorithm on, so keep-alive clients wait ~40 ms
  for a delayed ACK on every request.
* S3 events: a watcher lists the bucket and, for every new or changed object
  under ``models/`` or ``inputs/``, invokes the real ``on_object_created``
  handler with a real S3 event (URL-encoded key, size, eTag), as S3 would.
* ``.local/endpoints.json`` tells clients where everything is.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from chalice.cli.factory import CLIFactory  # noqa: E402
from chalice.local import LocalDevServer, ThreadedHTTPServer  # noqa: E402

from scripts.moto_server import MotoServer  # noqa: E402

log = logging.getLogger("efs-ml.local")
WATCHED_PREFIXES = ("models/", "inputs/")


class NoDelayHTTPServer(ThreadedHTTPServer):
    """chalice local's server with Nagle's algorithm off on every connection."""

    daemon_threads = True

    def get_request(self):  # type: ignore[override]
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def s3_event(bucket: str, key: str, size: int, etag: str, region: str) -> dict:
    """An ObjectCreated:Put event in the shape S3 delivers (key URL-encoded)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": now, "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "local-watcher",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size,
                       "eTag": etag.strip('"'), "sequencer": f"{time.time_ns():X}"},
        },
    }]}


class S3EventWatcher(threading.Thread):
    """Delivers S3 ObjectCreated events for the local bucket to the handler."""

    def __init__(self, app_obj, bucket: str, interval: float = 0.3) -> None:
        super().__init__(name="s3-event-watcher", daemon=True)
        import boto3

        from chalice.test import Client

        self.s3 = boto3.client("s3")
        self.bucket = bucket
        self.interval = interval
        self.client = Client(app_obj, stage_name="local", project_dir=str(PROJECT_DIR))
        self.region = self.s3.meta.region_name
        self.seen: dict[str, str] = {}
        self.stopping = threading.Event()

    def scan(self) -> int:
        """Deliver events for what changed since the last scan; returns how many."""
        delivered = 0
        for prefix in WATCHED_PREFIXES:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    if self.seen.get(key) == etag:
                        continue
                    event = s3_event(self.bucket, key, obj["Size"], etag, self.region)
                    try:
                        result = self.client.lambda_.invoke("on_object_created", event)
                        log.info("s3 event %s -> %s", key, result.payload)
                        self.seen[key] = etag
                        delivered += 1
                    except Exception:  # Lambda would retry: so do we, next scan
                        log.exception("s3 event handler failed for %s; will retry", key)
        return delivered

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.scan()
            except Exception:
                log.exception("s3 event watcher scan failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--s3-port", type=int, default=0, help="moto port (default: any free one)")
    parser.add_argument("--stock-server", action="store_true",
                        help="serve with chalice's stock server class (Nagle on), for comparison")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    os.chdir(PROJECT_DIR)
    state = PROJECT_DIR / ".local"
    state.mkdir(exist_ok=True)

    # Embedded defaults: a fake account that can only ever reach the local moto.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.pop("AWS_PROFILE", None)

    moto = MotoServer(args.s3_port or None).start()
    os.environ["AWS_ENDPOINT_URL_S3"] = moto.endpoint
    server = None
    watcher = None
    try:
        factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)
        config = factory.create_config_obj(chalice_stage_name="local")
        app_obj = config.chalice_app  # also applies the stage's environment variables
        bucket = os.environ["MODEL_BUCKET"]
        # The local stand-in for the EFS mount: a folder, there from the start
        # so that /health is truthful before the first write.
        os.makedirs(os.environ["EFS_ROOT"], exist_ok=True)
        import boto3

        boto3.client("s3").create_bucket(Bucket=bucket)
        server_cls = ThreadedHTTPServer if args.stock_server else NoDelayHTTPServer
        server = LocalDevServer(app_obj, config, args.host, args.port, server_cls=server_cls)
        watcher = S3EventWatcher(app_obj, bucket)
        watcher.start()
        endpoints = {
            "api_url": f"http://{args.host}:{server.server.server_address[1]}",
            "s3_endpoint": moto.endpoint,
            "bucket": bucket,
            "efs_root": os.path.abspath(os.environ["EFS_ROOT"]),
            "pid": os.getpid(),
        }
        (state / "endpoints.json").write_text(json.dumps(endpoints, indent=2))

        def stop(signum, frame):
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(f"Local S3 (moto) on {moto.endpoint}, bucket {bucket}; store at {endpoints['efs_root']}", flush=True)
        server.serve_forever()
    finally:
        if watcher is not None:
            watcher.stopping.set()
            watcher.join(timeout=10)
        if server is not None:
            server.server.server_close()
        moto.stop()
        (state / "endpoints.json").unlink(missing_ok=True)
        print("Stopped local API and S3.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
