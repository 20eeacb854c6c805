"""`make local` as a newcomer meets it: a real local stack (python -m scripts.local) in a private workdir.

A second start on a busy port, the gateway's own errors, and `make s3-put`.
"""

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.processes import start_local, stop, wait_ready

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local-stack")
    with open(workdir / "server.log", "wb") as log:
        proc = start_local(log, workdir)
    try:
        endpoints = wait_ready(proc, workdir / ".local" / "endpoints.json", timeout=60)
        yield workdir, endpoints, proc
    finally:
        assert stop(proc, set()) == []


def request(endpoints, method, path, body=None, headers=None):
    port = int(endpoints["api_url"].rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def documented_error(raw, code):
    body = json.loads(raw)
    assert set(body) == {"error", "message", "requestId"} and body["error"] == code, body
    assert body["message"] and body["requestId"]
    return body


def run(*args, timeout=60):
    return subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout)


def test_second_start_on_a_busy_port_says_so_in_one_line_and_leaves_the_first_alone(stack):
    workdir, endpoints, proc = stack
    port = endpoints["api_url"].rsplit(":", 1)[1]
    second = run("-m", "scripts.local", "--port", port, "--workdir", str(workdir))
    assert second.returncode == 1
    assert second.stderr.strip().count("\n") == 0 and "already in use" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    # The running server and its endpoints file are untouched.
    assert json.loads((workdir / ".local" / "endpoints.json").read_text())["pid"] == proc.pid
    assert request(endpoints, "GET", "/health")[0] == 200


def test_unknown_route_and_unknown_method_answer_in_the_documented_shape(stack):
    _, endpoints, _ = stack
    status, content_type, raw = request(endpoints, "GET", "/no/such/route")
    assert status == 403 and content_type == "application/json"
    assert documented_error(raw, "INVALID_REQUEST")["message"] == "Missing Authentication Token"
    for method in ("TRACE", "CONNECT", "BREW"):
        status, content_type, raw = request(endpoints, method, "/health")
        assert status == 405 and content_type == "application/json", (method, raw)
        assert method in documented_error(raw, "INVALID_REQUEST")["message"]
    # A known route with a method it lacks is the app's own 405, same shape.
    status, _, raw = request(endpoints, "DELETE", "/health")
    assert status == 405 and documented_error(raw, "INVALID_REQUEST")


def test_s3_put_lands_a_model_through_the_local_s3_event(stack, tmp_path):
    workdir, endpoints, _ = stack
    model = tmp_path / "put-model.bin"
    model.write_bytes(b"model bytes from make s3-put")
    put = run(
        "-m",
        "scripts.s3_put",
        str(model),
        "models/put-model.bin",
        "--endpoints",
        str(workdir / ".local" / "endpoints.json"),
    )
    assert put.returncode == 0, put.stderr
    deadline = time.monotonic() + 30
    while True:
        status, _, raw = request(endpoints, "GET", "/models/put-model.bin")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200, raw
    assert json.loads(raw)["sizeBytes"] == model.stat().st_size


def test_s3_put_refuses_clearly_without_a_running_stack_or_with_a_bad_key(tmp_path):
    model = tmp_path / "m.bin"
    model.write_bytes(b"x")
    missing = run("-m", "scripts.s3_put", str(model), "models/m.bin", "--endpoints", str(tmp_path / "none.json"))
    assert missing.returncode == 1 and "no running `make local`" in missing.stderr
    bad = run("-m", "scripts.s3_put", str(model), "outputs/m.bin", "--endpoints", str(tmp_path / "none.json"))
    assert bad.returncode == 1 and "prefix" in bad.stderr and "Traceback" not in bad.stderr


def test_a_method_no_route_has_is_405_naming_the_paths_methods_in_allow(stack):
    """RFC 9110 asks a 405 for Allow; the contract run (test_openapi_contract.py) found TRACE without it."""
    _, endpoints, _ = stack
    port = int(endpoints["api_url"].rsplit(":", 1)[1])
    for path, allow in (("/health", "GET, HEAD, OPTIONS"), ("/models/m.onnx", "DELETE, GET, HEAD, OPTIONS")):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("TRACE", path)
            response = conn.getresponse()
            assert response.status == 405 and response.getheader("Allow") == allow, (path, response.getheaders())
            documented_error(response.read(), "INVALID_REQUEST")
        finally:
            conn.close()
