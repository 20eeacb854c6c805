"""A fault-injecting HTTP proxy in front of the moto server.

A real server on 127.0.0.1 (in a thread) that boto3 reaches through
``AWS_ENDPOINT_URL_S3``. ``rule(method, path, n)`` decides per request
(``n``: how many requests with this method and path came before) whether to
answer with an S3 error, stall, cut the body short, or run a side effect
before forwarding. Every request is logged with its arrival time.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit


@dataclass
class Fault:
    """``status``: answer with this S3 error; ``delay``: stall first;
    ``truncate``: send only this fraction of the body, then close;
    ``before``: run this side effect, then forward."""

    status: int | None = None
    code: str = "SlowDown"
    delay: float = 0.0
    truncate: float | None = None
    before: Callable[[], None] | None = None


Rule = Callable[[str, str, int], "Fault | None"]
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        up = urlsplit(upstream)
        self.upstream = (up.hostname, up.port)
        self.rule: Rule = lambda method, path, n: None
        self.log: list[tuple[float, str, str]] = []
        self.faults = 0
        self._seen: Counter = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def once(self, method: str, fault: Fault) -> None:
        """Inject ``fault`` into the next ``method`` request only."""
        fired = []

        def rule(m: str, path: str, n: int) -> Fault | None:
            if m == method and not fired:
                fired.append(path)
                return fault
            return None

        self.rule = rule

    def requests(self, method: str, key_suffix: str) -> list[float]:
        """Arrival times of requests with ``method`` whose path ends with ``key_suffix``."""
        path_of = lambda p: p.split("?")[0]  # noqa: E731
        return [t for t, m, p in self.log if m == method and path_of(p).endswith(key_suffix)]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            n = self._seen[(h.command, h.path)]
            self._seen[(h.command, h.path)] += 1
            self.log.append((time.monotonic(), h.command, h.path))
        fault = self.rule(h.command, h.path, n)
        if fault is not None:
            with self._lock:
                self.faults += 1
            if fault.delay:
                time.sleep(fault.delay)
            if fault.before:
                fault.before()
            if fault.status:
                xml = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                    f"<Message>injected</Message><RequestId>proxy</RequestId></Error>"
                ).encode()
                h.send_response(fault.status)
                h.send_header("Content-Type", "application/xml")
                h.send_header("Content-Length", str(len(xml)))
                h.end_headers()
                if h.command != "HEAD":
                    h.wfile.write(xml)
                return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP and k.lower() != "expect"}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if fault is not None and fault.truncate is not None:
            h.wfile.write(data[: int(len(data) * fault.truncate)])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(data)
