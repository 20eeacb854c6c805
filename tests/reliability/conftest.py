"""Fixtures of the reliability/security suite.

``slow`` variants are deselected from the default run (``make test``) and run
by ``make stress`` (``-m slow``); each slow test has a default-run sibling of
the same kind, so the default run still exercises every kind.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.support.routes import ERROR_BODIES
from tests.support.routes import leaks as leaks_in


def pytest_collection_modifyitems(config, items):
    if config.getoption("markexpr") or os.environ.get("RELIABILITY_SLOW"):
        return
    here = os.path.dirname(__file__)
    slow = [i for i in items if i.get_closest_marker("slow") and str(i.path).startswith(here)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if i not in slow]


@pytest.fixture(scope="session", autouse=True)
def error_leak_scan():
    """Session-wide: no recorded error body leaks internals (see tests.support.routes.LEAKS)."""
    yield
    leaks = [(w, b) for w, b, sent in ERROR_BODIES if leaks_in(b, sent)]
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
