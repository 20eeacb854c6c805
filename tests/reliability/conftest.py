"""Fixtures of the reliability/security suite.

``slow`` variants are deselected from the default run (``make test``) and run
by ``make stress`` (``-m slow``); each slow test has a default-run sibling of
the same kind, so the default run still exercises every kind.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from tests.support.reliability import ERROR_CODES


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr") or os.environ.get("RELIABILITY_SLOW"):
        return
    here = os.path.dirname(__file__)
    slow = [i for i in items if i.get_closest_marker("slow") and str(i.path).startswith(here)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if i not in slow]


# Every error body the suite produces is recorded and scanned for leaks at
# the end of the session (paths outside the store, tracebacks, credentials).
ERROR_BODIES: list[tuple[str, dict]] = []
_LEAKS = re.compile(r"/tmp/|/home/|/root|/work/|/proc/|Traceback|File \"|\.py\b|AWS_SECRET|"
                    r"aws_secret|AKIA|testing|botocore|urllib3|Errno|0x[0-9a-f]{6,}", re.I)


def check_error_body(status: int, body: dict | str, where: str = "") -> dict:
    """Assert the documented error shape and record the body for the leak scan."""
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    assert isinstance(body, dict), body
    assert body.get("error") in ERROR_CODES, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("requestId"), str) and body["requestId"], body
    expected = {"INVALID_REQUEST": 400, "S3_NOT_FOUND": 404, "FILE_TOO_LARGE": 413,
                "EFS_WRITE_FAILED": 500, "NOT_FOUND": 404, "PROCESSING_FAILED": 500,
                "TIMEOUT": 504}[body["error"]]
    assert status == expected, (status, body)
    if body["error"] in ("EFS_WRITE_FAILED", "TIMEOUT"):
        assert isinstance(body.get("stage"), str) and body["stage"], body
    ERROR_BODIES.append((where, body))
    return body


# Fields that echo the client's own (validated) input back.
ECHOED = {"requestId", "key", "fileId"}


@pytest.fixture(scope="session", autouse=True)
def error_leak_scan():
    """Session-wide: no recorded error body leaks internals (see _LEAKS)."""
    yield
    leaks = [(w, b) for w, b in ERROR_BODIES
             if _LEAKS.search(json.dumps({k: v for k, v in b.items() if k not in ECHOED}))]
    assert not leaks, f"error bodies leak internals: {leaks[:5]}"


@pytest.fixture
def http(client):
    """POST/GET helpers on the chalice test client returning (status, body)."""

    class H:
        def post(self, path, body, content_type="application/json", raw=False):
            data = body if raw or isinstance(body, (str, bytes)) else json.dumps(body)
            r = client.http.post(path, body=data, headers={"Content-Type": content_type} if content_type else {})
            return r.status_code, _decode(r.body)

        def request(self, method, path, body=b"", headers=None):
            r = client.http.request(method, path, body=body, headers=headers or {})
            return r.status_code, _decode(r.body)

    return H()


def _decode(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw
