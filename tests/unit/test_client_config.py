"""The CLI's configuration and error edges against a loopback HTTP server that records what it gets.

EFSML_URL / EFSML_API_KEY (sent as x-api-key, as the deployed API wants),
--timeout, and error bodies that are not the service's (a gateway's HTML).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from efsml_client.cli import main

PROJECT = Path(__file__).resolve().parents[2]


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Recorder.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path.startswith("/slow"):
            time.sleep(3)
        if self.path.startswith("/models/gateway"):
            body, status, kind = b"<html>502 Bad Gateway</html>", 502, "text/html"
        elif self.path.startswith("/models?") and "next=p2" in self.path:
            body, status, kind = json.dumps({"models": [{"name": "b"}], "count": 1}).encode(), 200, "application/json"
        else:
            page = {"models": [{"name": "a"}], "count": 1, "next": "p2"}
            body, status, kind = json.dumps(page).encode(), 200, "application/json"
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:  # the timed-out client has gone
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.daemon_threads, httpd.block_on_close = True, False  # a sleeping handler does not hold up teardown
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def run(monkeypatch, capsys):
    """The CLI in this process (main(argv)), with no EFSML_* of the test's environment: (code, stdout, stderr)."""
    for name in ("EFSML_URL", "EFSML_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    def call(*args, **env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def test_url_and_api_key_from_the_environment_and_pages_followed(server, run):
    code, out, err = run("models", EFSML_URL=server, EFSML_API_KEY="k-123")
    assert code == 0, err
    assert [m["name"] for m in json.loads(out)] == ["a", "b"]
    assert [r["path"] for r in Recorder.seen] == ["/models", "/models?next=p2"]
    assert all(r["x-api-key"] == "k-123" for r in Recorder.seen)


def test_options_win_over_the_environment_before_or_after_the_command(server, run):
    code, _, err = run("models", "--url", server, "--api-key", "opt", EFSML_URL="http://127.0.0.1:9", EFSML_API_KEY="e")
    assert code == 0, err
    code, _, err = run("--api-key", "first", "models", "--url", server)
    assert code == 0, err
    assert [r["x-api-key"] for r in Recorder.seen] == ["opt", "opt", "first", "first"]


def test_no_key_no_header(server, run):
    assert run("models", "--url", server)[0] == 0
    assert all("x-api-key" not in r for r in Recorder.seen)


def test_a_slow_answer_is_exit_5_after_timeout(server, run):
    started = time.monotonic()
    code, _, err = run("show", "x", "--url", server + "/slow", "--timeout", "0.5")
    assert code == 5 and json.loads(err)["error"] == "UNREACHABLE"
    assert time.monotonic() - started < 2.9  # not the server's 3 s


def test_an_error_body_that_is_not_the_services_is_still_one_json_line(server, run):
    code, _, err = run("show", "gateway", "--url", server)
    assert code == 1
    assert json.loads(err) == {"error": "HTTP_502", "message": "<html>502 Bad Gateway</html>", "status": 502}


def test_a_closed_stdout_is_no_traceback(server):
    """`... | head` closes the pipe early: the command ends quietly, with no traceback on stderr."""
    read, write = os.pipe()
    os.close(read)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EFSML_")}
    argv = [sys.executable, "-m", "efsml_client", "models", "--url", server]
    run = subprocess.run(argv, cwd=PROJECT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=environ)
    os.close(write)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def test_ctrl_c_is_exit_130_without_a_traceback(server):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EFSML_")}
    argv = [sys.executable, "-m", "efsml_client", "show", "x", "--url", server + "/slow"]
    proc = subprocess.Popen(argv, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    deadline = time.monotonic() + 20
    while not Recorder.seen and time.monotonic() < deadline:  # the request is out: the CLI waits on it
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and json.loads(err)["error"] == "INTERRUPTED", err
