"""The whole service on this machine, with no AWS account (``make local``).

* S3 is a moto server on loopback (started and stopped here), reached only
  through boto3's standard ``AWS_ENDPOINT_URL_S3``.
* The API is ``chalice local`` (stage ``local`` of .chalice/config.json),
  served with TCP_NODELAY: stock ``chalice local`` writes headers and body
  separately with Nagle's algorithm on, so keep-alive clients wait ~40 ms
  for a delayed ACK on every request.
* What API Gateway answers itself (an unknown route, a method it does not
  know) comes in the documented error shape, as the deployed gateway
  responses do (infra/api.tf), not as chalice local's ``{"message"}`` or
  http.server's HTML page.
* S3 events: a watcher lists the bucket and, for every new or changed object
  under ``models/`` or ``inputs/``, invokes the real ``on_object_created``
  handler with a real S3 event (URL-encoded key, size, eTag), as S3 would.
  An object copied onto itself (the async ingest's hand-off) keeps its ETag,
  and LastModified only has whole seconds: the watcher also compares the
  hand-off's metadata marker (one HEAD per object changed within the last
  seconds), so that copy is delivered too.
* ``.local/endpoints.json`` tells clients where everything is; it belongs to
  the server that wrote it (its ``pid``), and only that server removes it.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote_plus

from chalice.cli.factory import CLIFactory
from chalice.local import (
    ChaliceRequestHandler,
    LocalDevServer,
    LocalGatewayException,
    RouteMatcher,
    ThreadedHTTPServer,
)

from chalicelib import http
from devstack import jobs
from devstack.moto import MotoServer

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8000
log = logging.getLogger(__name__)
WATCHED_PREFIXES = ("models/", "inputs/")


class NoDelayHTTPServer(ThreadedHTTPServer):
    """chalice local's server with Nagle's algorithm off on every connection."""

    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def error_body(status: int, message: str, request_id: str | None = None) -> bytes:
    """The documented error body for an answer the gateway gives itself.

    Same mapping as the deployed gateway responses: 4xx is INVALID_REQUEST,
    5xx is PROCESSING_FAILED.
    """
    code = "PROCESSING_FAILED" if status >= 500 else "INVALID_REQUEST"
    return json.dumps({"error": code, "message": message, "requestId": request_id or str(uuid.uuid4())}).encode()


class GatewayShapedHandler(ChaliceRequestHandler):
    """chalice local's handler, with the gateway's own errors in our shape."""

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        # Set before the base class handles the request (it does so in __init__).
        self.app_object = app_object
        super().__init__(request, client_address, server, app_object, config)

    def _allowed(self) -> str | None:
        """The ``Allow`` header of the request's route path, if it names a route."""
        try:
            route = RouteMatcher(list(self.app_object.routes)).match_route(self.path).route
        except ValueError:
            return None
        return http.allowed_methods(self.app_object, route)

    def _send_error_response(self, error: LocalGatewayException) -> None:
        # Unknown route (403 "Missing Authentication Token") and authorizer
        # refusals: keep the status and message, use the documented body.
        try:
            message = str(json.loads(error.body or b"{}").get("message") or "Forbidden")
        except ValueError:
            message = "Forbidden"
        headers = dict(error.headers or {})
        body = error_body(error.CODE, message, headers.get("x-amzn-RequestId"))
        headers["Content-Type"] = "application/json"
        self._send_http_response(error.CODE, headers, body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (unknown method, bad request line) as JSON.

        A method no route has (TRACE, CONNECT, ...) is answered like a wrong
        method on a known route: 405 INVALID_REQUEST.
        """
        allow = None
        if code == 501:
            code, message = 405, f"Method {self.command} is not allowed"
            allow = self._allowed()  # RFC 9110: a 405 names the methods the path has
        body = error_body(code, message or "Invalid request")
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        if allow is not None:
            self.send_header("Allow", allow)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # The request (and any body) may be unread or unparseable: close.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


def s3_event(
    bucket: str, key: str, size: int, etag: str, region: str, event_name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    """An S3 event (``ObjectCreated:*`` or ``ObjectRemoved:Delete``) in the shape S3 delivers (key URL-encoded)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": now,
                "eventName": event_name,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "local-watcher",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": f"{time.time_ns():X}",
                    },
                },
            }
        ]
    }


#: The metadata the async ingest's hand-off adds (chalicelib.ingest.hand_off).
HAND_OFF_MARKER = "efs-ml-ingest-accepted"
#: LastModified has whole seconds: a change within this long of it may hide behind an equal listing.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class Seen:
    """What the watcher last delivered for a key, and when it last checked it."""

    etag: str
    modified: float
    marker: str | None
    checked: float


class S3EventWatcher(threading.Thread):
    """Delivers S3 ObjectCreated and ObjectRemoved events for the local bucket to the handler."""

    def __init__(self, app_obj: Any, bucket: str, interval: float = 0.3) -> None:
        super().__init__(name="s3-event-watcher", daemon=True)
        import boto3
        from chalice.test import Client

        self.s3 = boto3.client("s3")
        self.bucket = bucket
        self.interval = interval
        self.client = Client(app_obj, stage_name="local", project_dir=str(PROJECT_DIR))
        self.region = self.s3.meta.region_name
        self.seen: dict[str, Seen] = {}
        self.stopping = threading.Event()

    def scan(self) -> int:
        """Deliver events for what changed since the last scan; returns how many."""
        delivered = 0
        listed: set[str] = set()
        for prefix in WATCHED_PREFIXES:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    key, etag = obj["Key"], obj["ETag"]
                    listed.add(key)
                    modified = obj["LastModified"].timestamp()
                    now = time.time()
                    seen = self.seen.get(key)
                    if seen is not None and (seen.etag, seen.modified) == (etag, modified):
                        if seen.checked - modified >= SETTLE_SECONDS:
                            continue  # checked after its last possible change
                        marker = self._marker(key)
                        if marker == seen.marker:
                            self.seen[key] = Seen(etag, modified, marker, now)
                            continue
                    else:
                        marker = self._marker(key)
                    name = "ObjectCreated:Copy" if marker and seen is not None else "ObjectCreated:Put"
                    event = s3_event(self.bucket, key, obj["Size"], etag, self.region, name)
                    delivered += self._deliver(key, event, Seen(etag, modified, marker, now))
        for key in [k for k in self.seen if k not in listed]:  # gone since the last scan
            delivered += self._deliver(
                key, s3_event(self.bucket, key, 0, "", self.region, "ObjectRemoved:Delete"), None
            )
        return delivered

    def _deliver(self, key: str, event: dict[str, Any], seen: Seen | None) -> int:
        """Invoke the handler; on success remember ``seen`` (``None``: forget the key)."""
        try:
            result = self.client.lambda_.invoke("on_object_created", event)
        except Exception:  # Lambda would retry: so do we, next scan
            log.exception("s3 event handler failed for %s; will retry", key)
            return 0
        log.info("s3 event %s -> %s", key, result.payload)
        if seen is None:
            self.seen.pop(key, None)
        else:
            self.seen[key] = seen
        return 1

    def _marker(self, key: str) -> str | None:
        """The hand-off marker of ``key``'s current version (``None``: none, or gone)."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception:  # deleted meanwhile: the listing's change is delivered as is
            return None
        marker = head.get("Metadata", {}).get(HAND_OFF_MARKER)
        return str(marker) if marker else None

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.scan()
            except Exception:
                log.exception("s3 event watcher scan failed")


class PortInUse(Exception):
    """The API port is taken (often by another ``make local``)."""


def _bind(app_obj: Any, config: Any, host: str, port: int, stock: bool) -> LocalDevServer:
    server_cls = ThreadedHTTPServer if stock else NoDelayHTTPServer
    try:
        return LocalDevServer(app_obj, config, host, port, handler_cls=GatewayShapedHandler, server_cls=server_cls)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{host}:{port} is already in use (another `make local`?); "
                f"stop it or choose another port: make local PORT=8001"
            ) from None
        raise


def _remove_if_ours(path: Path) -> None:
    """Delete the endpoints file only if this process wrote it."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make local", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or DEFAULT_PORT),
        help=f"API port; 0 picks a free one (default: $PORT or {DEFAULT_PORT})",
    )
    parser.add_argument("--s3-port", type=int, default=0, help="moto port (default: any free one)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=PROJECT_DIR,
        help="where .local/ (endpoints file, store) lives (default: the project)",
    )
    parser.add_argument(
        "--job-workers",
        type=int,
        default=jobs.job_workers(),
        help=f"batch job worker processes (default: $JOB_WORKERS or {jobs.DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--stock-server", action="store_true", help="serve with chalice's stock server class (Nagle on), for comparison"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 1 with a one-line message if the port is busy."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    # The local stage's paths (EFS_ROOT=.local/efs) are relative: they
    # resolve against the working directory, so --workdir moves all of it.
    os.chdir(args.workdir)
    state = Path(".local").resolve()
    state.mkdir(exist_ok=True)
    endpoints_file = state / "endpoints.json"

    # Embedded defaults: a fake account that can only ever reach the local moto.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.pop("AWS_PROFILE", None)

    factory = CLIFactory(str(PROJECT_DIR), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name="local")
    app_obj = config.chalice_app  # also applies the stage's environment variables
    # The port first: a busy one must fail before anything is started or written.
    try:
        server = _bind(app_obj, config, args.host, args.port, args.stock_server)
    except PortInUse as exc:
        print(f"make local: {exc}", file=sys.stderr)
        return 1
    moto: MotoServer | None = None
    watcher = None
    workers = None
    dead_letters = None
    try:
        moto = MotoServer(args.s3_port or None).start()
        os.environ["AWS_ENDPOINT_URL_S3"] = moto.endpoint
        bucket = os.environ["MODEL_BUCKET"]
        # The local stand-in for the EFS mount: a folder, there from the start
        # so that /health is truthful before the first write.
        os.makedirs(os.environ["EFS_ROOT"], exist_ok=True)
        import boto3

        boto3.client("s3").create_bucket(Bucket=bucket)
        watcher = S3EventWatcher(app_obj, bucket)
        watcher.start()
        queues = jobs.configure_local_queues(moto.endpoint)  # batch jobs: moto's SQS too
        dead_letters = jobs.start_dead_letter_poller(app_obj, queues)
        endpoints = {
            "api_url": f"http://{args.host}:{server.server.server_address[1]}",
            "s3_endpoint": moto.endpoint,
            "bucket": bucket,
            "efs_root": os.path.abspath(os.environ["EFS_ROOT"]),
            "pid": os.getpid(),
            **queues,
        }
        endpoints_file.write_text(json.dumps(endpoints, indent=2))
        workers = jobs.WorkerProcesses(endpoints_file, args.job_workers).start()

        def stop(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(
            f"API on {endpoints['api_url']}; local S3 and SQS (moto) on {moto.endpoint}, bucket {bucket}; "
            f"store at {endpoints['efs_root']}; {args.job_workers} job worker(s)",
            flush=True,
        )
        server.serve_forever()
    finally:
        if workers is not None:
            workers.stop()
        if watcher is not None:
            watcher.stopping.set()
            watcher.join(timeout=10)
        if dead_letters is not None:
            dead_letters[0].stopping.set()
            dead_letters[1].join(timeout=10)
        server.server.server_close()
        if moto is not None:
            moto.stop()
        _remove_if_ours(endpoints_file)
        print("Stopped local API, S3, SQS and job workers.", flush=True)
    return 0
