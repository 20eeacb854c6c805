"""What error bodies may contain: no server paths, tracebacks or secrets.

(Split from the deployed-shape review, whose stack checks moved to
tests/infra/test_deployed_shape.py.)
"""

from __future__ import annotations

import json

from tests.support.routes import ECHOED, check_error_body
from tests.support.routes import LEAKS as _LEAKS


def test_leak_scanner_catches_leaks():
    for leak in (
        "/tmp/pytest/efs/models/x",
        "Traceback (most recent call last)",
        "AWS_SECRET_ACCESS_KEY",
        "key testing",
        '  File "app.py", line 3',
        "[Errno 5] Input/output error",
    ):
        assert _LEAKS.search(leak), leak
    assert not _LEAKS.search("Failed to write file to EFS (Input/output error)")
    assert "message" not in ECHOED


def test_unexpected_exception_leaks_nothing(http, efs_root, monkeypatch):
    """An unhandled error deep inside carries paths and secrets in its text;
    the client gets a bare PROCESSING_FAILED."""
    from chalicelib.runners import opaque

    def boom(*a, **kw):
        raise RuntimeError(f"{efs_root}/models/x AWS_SECRET_ACCESS_KEY=testing")

    monkeypatch.setattr(opaque.OpaqueRunner, "predict", boom)
    assert http.post("/ingest", {"data": "x", "filename": "m.bin"})[0] == 200
    status, body = http.post("/predict", {"fileId": "f", "model": "m.bin"})
    check_error_body(status, body, "unexpected exception")
    assert body["error"] == "PROCESSING_FAILED"
    assert not _LEAKS.search(json.dumps(body)) and str(efs_root) not in json.dumps(body)


def test_the_scan_tells_an_echo_of_the_clients_words_from_a_leak():
    from tests.support.routes import leaks

    body = {"error": "INVALID_REQUEST", "message": "Unknown field(s): 'app.py'", "requestId": "r"}
    assert leaks(body, '{"app.py": 1}') == []
    assert leaks(body) == ["app.py"]
    ours = {"error": "PROCESSING_FAILED", "message": "failed at /tmp/efs/models/x", "requestId": "r"}
    assert leaks(ours, '{"app.py": 1}') == ["/tmp/efs/models/x"]
