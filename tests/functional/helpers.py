"""Small helpers for route tests through chalice.test.Client."""
import json

ERROR_CODES = {"INVALID_REQUEST", "S3_NOT_FOUND", "FILE_TOO_LARGE", "EFS_WRITE_FAILED", "NOT_FOUND", "PROCESSING_FAILED", "TIMEOUT"}


def post(client, path, body, content_type="application/json"):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post(path, body=raw, headers={"Content-Type": content_type})


def ok(response):
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def error(response, status, code):
    """Assert the documented error shape and return the body."""
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert body["error"] == code and body["error"] in ERROR_CODES
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["requestId"], str) and body["requestId"]
    assert "Traceback" not in response.body.decode()
    return body
