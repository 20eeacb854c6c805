"""A thin, timed HTTP client for the API (requests), with upload progress."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import requests

from demo.target import Target

#: Transfers above this size show a progress bar.
PROGRESS_THRESHOLD_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT = (5.0, 120.0)  # connect, read (a 1 GiB ingest by key takes a while)


@dataclass
class Answer:
    """One HTTP exchange: status, decoded body (JSON or text) and latency."""

    status: int
    body: Any
    latency_ms: float
    headers: dict[str, str]

    @property
    def json_ok(self) -> bool:
        return "application/json" in self.headers.get("content-type", "").lower()


class ProgressReader:
    """A file-like body with a known length that advances a tqdm bar.

    A length (``__len__``) makes requests send ``Content-Length`` instead of
    chunked encoding, which presigned S3 PUTs refuse.
    """

    def __init__(self, f: BinaryIO, size: int, label: str) -> None:
        self._f = f
        self._size = size
        self._bar = None
        if size > PROGRESS_THRESHOLD_BYTES:
            from tqdm import tqdm

            self._bar = tqdm(
                total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, file=sys.stderr, leave=False
            )

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if self._bar is not None:
            self._bar.update(len(data))
        return data

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class ApiClient:
    """Calls the API with the stack's key (``x-api-key``) when it has one."""

    def __init__(self, target: Target, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        self.session = requests.Session()  # keep-alive: latency is the service's, not TCP setup
        self.session.headers["User-Agent"] = "efs-ml-demonstration/1"
        if target.api_key:
            self.session.headers["x-api-key"] = target.api_key

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        """One timed request; ``raw`` sends a body as-is (malformed-input checks)."""
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        headers = {"Content-Type": content_type} if data is not None else {}
        started = time.perf_counter()
        r = self.session.request(method, self.target.api_url + path, data=data, headers=headers, timeout=self.timeout)
        latency = (time.perf_counter() - started) * 1000
        try:
            decoded: Any = r.json()
        except ValueError:
            decoded = r.text
        return Answer(r.status_code, decoded, latency, {k.lower(): v for k, v in r.headers.items()})

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any) -> Answer:
        return self.call("POST", path, body)

    def put_presigned(
        self, url: str, f: BinaryIO, size: int, headers: dict[str, str] | None = None, label: str = "upload"
    ) -> Answer:
        """PUT ``size`` bytes from ``f`` to a presigned URL (no API key: S3 is not the API)."""
        reader = ProgressReader(f, size, label)
        started = time.perf_counter()
        try:
            r = requests.put(
                url,
                data=reader,
                headers={k: v for k, v in (headers or {}).items() if k.lower() != "content-length"},
                timeout=(self.timeout[0], max(self.timeout[1], 600.0)),
            )
        finally:
            reader.close()
        latency = (time.perf_counter() - started) * 1000
        return Answer(r.status_code, r.text, latency, {k.lower(): v for k, v in r.headers.items()})

    def close(self) -> None:
        self.session.close()
