"""Request edges (issue 16, finding 11): one 0-byte rule on every path, JSON
in UTF-8 or 415, HEAD and OPTIONS answered as an HTTP server would, in
process and through the local server alike."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from urllib.parse import quote

import pytest
from chalice import Chalice

from chalicelib import http as edge
from tests.support.routes import check_error_body, error, ok, post

EMPTY = "must not be empty"


# -- 0-byte objects: refused everywhere, as 400 INVALID_REQUEST ------------------------
@pytest.mark.parametrize(
    "body", [{"data": "", "filename": "e.bin"}, {"data": "", "filename": "e.bin", "encoding": "base64"}]
)
def test_empty_inline_ingest_is_refused(client, body):
    assert EMPTY in error(post(client, "/ingest", body), 400, "INVALID_REQUEST")["message"]


def test_empty_upload_is_refused_as_inline_is(client, bucket):
    assert (
        EMPTY
        in error(post(client, "/uploads", {"key": "models/e.bin", "sizeBytes": 0}), 400, "INVALID_REQUEST")["message"]
    )
    assert ok(post(client, "/uploads", {"key": "models/e.bin", "sizeBytes": 1}))["sizeBytes"] == 1


def test_empty_key_ingest_is_refused_and_leaves_no_state(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/e.bin", Body=b"")
    assert EMPTY in error(post(client, "/ingest", {"key": "models/e.bin"}), 400, "INVALID_REQUEST")["message"]
    error(client.http.get("/models/e.bin"), 404, "NOT_FOUND")


def test_empty_object_event_is_a_visible_failure_and_stores_nothing(client, bucket, s3_client, efs_root):
    s3_client.put_object(Bucket=bucket, Key="models/e.bin", Body=b"")
    client.lambda_.invoke(
        "on_object_created", client.events.generate_s3_event(bucket=bucket, key=quote("models/e.bin"))
    )
    state = ok(client.http.get("/models/e.bin"))
    assert state["state"] == "failed" and state["readyVersion"] is None
    assert state["error"]["error"] == "INVALID_REQUEST" and EMPTY in state["error"]["message"]
    assert not (efs_root / "models" / "e.bin").exists()


# -- Content-Type and charset -------------------------------------------------------------
BODY = {"data": "x", "filename": "ct.bin"}


@pytest.mark.parametrize(
    "ctype",
    [
        "application/json",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        "application/vnd.x+json",
    ],
)
def test_json_in_utf8_is_taken(client, ctype):
    assert ok(post(client, "/ingest", BODY, content_type=ctype))["sizeBytes"] == 1


@pytest.mark.parametrize(
    "ctype",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-16",
        "application/json; charset=iso-8859-1",
        "text/x+json",
    ],
)
def test_anything_else_is_415(client, ctype):
    headers = {} if ctype is None else {"Content-Type": ctype}
    for path in ("/ingest", "/predict", "/uploads"):
        r = client.http.post(path, body=json.dumps(BODY), headers=headers)
        assert r.status_code == 415, (path, ctype, r.body)
        body = check_error_body(415, json.loads(r.body), "content type")
        assert body["error"] == "UNSUPPORTED_MEDIA_TYPE" and "Content-Type" in body["message"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_utf16_body_is_refused_even_labelled_json(client, encoding):
    raw = json.dumps(BODY).encode(encoding)
    assert "UTF-8" in error(post(client, "/ingest", raw), 400, "INVALID_REQUEST")["message"]
    error(client.http.get("/models/ct.bin"), 404, "NOT_FOUND")


# -- HEAD and OPTIONS ------------------------------------------------------------------
def test_head_is_a_get_without_its_body(client):
    ok(post(client, "/ingest", {"data": "m", "filename": "h.bin"}))
    for path, status in (("/models", 200), ("/models/h.bin", 200), ("/models/absent.bin", 404), ("/health", 200)):
        got, head = client.http.get(path), client.http.head(path)
        assert (head.status_code, head.body) == (status, b""), path
        assert got.status_code == status and got.body and head.headers["Content-Type"] == got.headers["Content-Type"]


def test_head_where_there_is_no_get_is_405_with_allow(client):
    r = client.http.head("/ingest")
    assert (r.status_code, r.body, r.headers["Allow"]) == (405, b"", "OPTIONS, POST")


def test_options_names_the_methods_of_each_path(client):
    for path, allow in (
        ("/models", "GET, HEAD, OPTIONS"),
        ("/models/x.bin", "DELETE, GET, HEAD, OPTIONS"),
        ("/ingest", "OPTIONS, POST"),
    ):
        r = client.http.options(path)
        assert (r.status_code, r.body, r.headers["Allow"]) == (200, b"", allow), path


def test_a_wrong_method_is_405_with_allow(client):
    r = client.http.put("/models/x.bin", body=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 405 and r.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS"
    check_error_body(405, json.loads(r.body), "wrong method")


def test_every_route_of_the_app_has_head_and_options():
    """A route defined after http.answer_head_and_options(app) in app.py would miss them: caught here."""
    import app

    for path, methods in app.app.routes.items():
        assert "OPTIONS" in methods, f"{path}: no OPTIONS (defined after answer_head_and_options?)"
        assert "HEAD" in methods or "GET" not in methods, f"{path}: a GET without HEAD"


def test_the_rule_covers_routes_defined_later():
    """Generic over app.routes: a route a later change adds (/v2/...) gets HEAD and OPTIONS too."""
    from chalice.test import Client

    other = Chalice("edges")
    other.register_middleware(edge.reshape_framework_errors(other), "http")

    @other.route("/v2/models/{name}", methods=["GET", "POST"])
    def model(name):
        return {"name": name}

    edge.answer_head_and_options(other)
    with Client(other) as c:
        assert (c.http.head("/v2/models/m").status_code, c.http.head("/v2/models/m").body) == (200, b"")
        assert c.http.options("/v2/models/m").headers["Allow"] == "GET, HEAD, OPTIONS, POST"


@pytest.fixture
def local_server(efs_root):
    """The local API (devstack's gateway-shaped chalice local) on a loopback port."""
    from chalice.config import Config

    import app
    from devstack.local import _bind

    server = _bind(app.app, Config.create(chalice_app=app.app, lambda_timeout=60), "127.0.0.1", 0, False)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server.server.server_address[1]
    server.server.shutdown()
    server.server.server_close()
    thread.join(5)


def _request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def test_local_server_answers_head_and_options_as_the_app_does(local_server):
    status, headers, body = _request(local_server, "OPTIONS", "/models")
    assert (status, body, headers.get("Allow")) == (200, b"", "GET, HEAD, OPTIONS")
    status, headers, body = _request(local_server, "HEAD", "/models")
    assert (status, body) == (200, b"") and headers["Content-Type"] == "application/json"
    status, _, body = _request(local_server, "POST", "/ingest", json.dumps(BODY).encode())
    assert status == 415 and json.loads(body)["error"] == "UNSUPPORTED_MEDIA_TYPE"
    raw = base64.b64encode(b"\x00").decode()
    ingest = json.dumps({"data": raw, "filename": "l.bin", "encoding": "base64"}).encode()
    status, _, body = _request(local_server, "POST", "/ingest", ingest, {"Content-Type": "application/json"})
    assert status == 200, body
