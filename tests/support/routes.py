"""Route tests through chalice.test.Client: post, ok and the documented error shape."""

from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.errors import registry

#: Every documented error code with its status and extra field (chalicelib.errors).
ERRORS = registry()

# Every error body checked is recorded; the reliability suite scans them all
# for leaks at the end of the session (paths outside the store, tracebacks,
# credentials).
ERROR_BODIES: list[tuple[str, dict[str, Any], str]] = []
LEAKS = re.compile(
    r"/tmp/|/home/|/root|/work/|/proc/|Traceback|File \"|\.py\b|AWS_SECRET|"
    r"aws_secret|AKIA|testing|botocore|urllib3|Errno|0x[0-9a-f]{6,}",
    re.I,
)
#: Fields that echo the client's own (validated) input back.
ECHOED = {"requestId", "key", "fileId"}


def post(client: Any, path: str, body: Any, content_type: str = "application/json") -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(path, body=raw, headers={"Content-Type": content_type})


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def leaks(body: dict[str, Any], sent: str = "") -> list[str]:
    """What in ``body`` (its fields that do not echo the client, :data:`ECHOED`)
    looks like internals (:data:`LEAKS`), except words the client itself sent
    (``sent``: the request's path and body): a fuzzed field named ``app.py``
    echoed in "Unknown field(s): 'app.py'" is the client's text, not ours."""
    text = json.dumps({k: v for k, v in body.items() if k not in ECHOED}, ensure_ascii=False)
    found = []
    for match in LEAKS.finditer(text):
        start, end = match.span()
        while start > 0 and text[start - 1] not in " '\"":
            start -= 1
        while end < len(text) and text[end] not in " '\"":
            end += 1
        word = text[start:end]
        if not (sent and word in sent):
            found.append(word)
    return found


def check_error_body(
    status: int, body: dict[str, Any] | str | bytes, where: str = "", sent: str = ""
) -> dict[str, Any]:
    """Assert the documented error shape (status, code, extra field) and record
    the body (and what the client sent, for the leak scan: :func:`leaks`)."""
    if isinstance(body, (str, bytes)):
        body = json.loads(body)
    assert isinstance(body, dict), body
    spec = ERRORS.get(body.get("error"))  # type: ignore[arg-type]
    assert spec is not None, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("requestId"), str) and body["requestId"], body
    # 405 is the documented status of INVALID_REQUEST for a wrong method.
    assert status == spec.status or (status == 405 and spec.code == "INVALID_REQUEST"), (status, body)
    if spec.field is not None and spec.code != "NOT_FOUND":  # fileId may be null for unknown models
        assert spec.field in body, body
    ERROR_BODIES.append((where, body, sent))
    return body


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the documented ``code`` error with ``status``; return the body."""
    assert response.status_code == status, response.body
    assert "Traceback" not in response.body.decode()
    body = check_error_body(status, response.body)
    assert body["error"] == code, body
    return body


def proxy_event(
    method: str, resource: str, path: str, params: dict[str, str], body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """An API Gateway (REST, proxy) event as Lambda receives it: a body of a
    binary media type base64-encoded (``isBase64Encoded``), any other as text."""
    import base64

    binary = headers.get("Content-Type", headers.get("content-type", "")) == "application/octet-stream"
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {k.lower(): v for k, v in headers.items()},
        "multiValueHeaders": {},
        "pathParameters": params,
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "requestId": "proxy-event", "stage": "api"},
        "body": base64.b64encode(body).decode() if binary else body.decode(),
        "isBase64Encoded": binary,
    }
