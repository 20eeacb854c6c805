"""`make demo` end to end: the local stack (devstack) + demonstration.py --local in subprocesses.

The project is copied to a temporary directory first, so the run has its own
.local/ (endpoints file, store) and cannot disturb a developer's `make local`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
COPIED = ("app.py", "demonstration.py", "chalicelib", "demo", "devstack", "scripts", ".chalice")


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (this test's own copy)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "deployments", "venv")
    dest.mkdir()
    for name in COPIED:
        src = PROJECT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def test_make_demo_runs_every_step_and_leaves_nothing_running(tmp_path):
    project = copy_project(tmp_path / "project")
    results, summary = tmp_path / "results.json", tmp_path / "summary.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.run_local",
            "--start-timeout",
            "40",
            "--",
            "--large-mb",
            "5",
            "--warm-repeats",
            "2",
            "--land-timeout",
            "30",
            "--results",
            str(results),
            "--summary",
            str(summary),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "no process left behind" in run.stdout
    assert processes_mentioning(str(project)) == []
    # Nothing the demo stored stays: its private store is gone, the shared one untouched.
    assert not (project / ".local" / "efs").exists()
    assert [p.name for p in (project / ".local").iterdir()] == ["demo-server.log"]

    doc = json.loads(results.read_text())
    assert doc["passed"] is True and doc["counts"]["fail"] == 0 and doc["counts"]["skipped"] == 0
    names = [s["name"] for s in doc["steps"]]
    for expected in (
        "ingest inline (data + filename)",
        "ingest by S3 key",
        "uploads: S3 event lands the model",
        "predict opaque model (cold)",
        "predict ONNX model (cold)",
        "error: ingest missing S3 key -> 404",
        "error: upload above MAX_INGEST_BYTES -> 413",
        "error: GET unknown model -> 404",
        "delete: DELETE /models/{name} -> 200 deleted",
        "delete: model gone from GET /models -> 404",
        "delete: predict with the deleted (warm) model -> 404",
        "async ingest: poll statusUrl until ready",
        "failure: GET /models/{name} is failed + error",
        "failure: GET /models lists both failures",
        "job: POST /jobs splits it into 10 blocks",
        "job: the presigned result URL downloads x @ W + b",
    ):
        assert expected in names
    for step in doc["steps"]:
        assert set(step) >= {"name", "result", "latencyMs", "httpStatus", "detail", "passed"}
        assert step["result"] in ("pass", "n/a"), step
    # The async step is n/a only if the upload's own S3 event landed the object
    # before POST /ingest looked (then 200 'exists': nothing left to hand off).
    by_name = {s["name"]: s for s in doc["steps"]}
    async_ingest = by_name["async ingest: poll statusUrl until ready"]
    assert by_name["ingest by S3 key"]["httpStatus"] == (202 if async_ingest["result"] == "pass" else 200)
    assert async_ingest["result"] == "pass" or "synchronously" in async_ingest["detail"]
    assert {s["name"] for s in doc["steps"] if s["result"] == "n/a"} - {async_ingest["name"]} == {
        "error: EFS_WRITE_FAILED -> 500",
        "error: PROCESSING_FAILED -> 500",
    }
    s = doc["summary"]
    assert s["predictColdMs"]["count"] >= 1 and s["predictWarmMs"]["count"] >= 1
    assert s["apiLatencyMs"]["p50"] <= s["apiLatencyMs"]["p95"]
    assert s["throughput"]["presignedPutMiBps"] > 0
    text = summary.read_text()
    assert text.startswith("Demonstration PASSED") and "p50" in text and "p95" in text
    # The stack's logs are JSON lines with request ids and EMF metrics.
    log_lines = [
        json.loads(l) for l in (project / ".local" / "demo-server.log").read_text().splitlines() if l.startswith("{")
    ]
    assert any(l.get("route") == "s3:ObjectCreated" for l in log_lines)
    assert any("_aws" in l and "ModelLoadMs" in l for l in log_lines)


def test_client_exits_nonzero_when_the_api_is_unreachable(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps({"api_url": f"http://127.0.0.1:{port}", "s3_endpoint": f"http://127.0.0.1:{port}", "bucket": "b"})
    )
    results, summary = tmp_path / "r.json", tmp_path / "s.txt"
    run = subprocess.run(
        [
            sys.executable,
            str(PROJECT / "demonstration.py"),
            "--local",
            "--endpoints",
            str(endpoints),
            "--large-mb",
            "1",
            "--warm-repeats",
            "1",
            "--results",
            str(results),
            "--summary",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    doc = json.loads(results.read_text())
    assert doc["passed"] is False and doc["counts"]["fail"] >= 1
    assert "FAILED" in summary.read_text()


def test_client_exits_2_without_a_target(tmp_path):
    run = subprocess.run(
        [sys.executable, str(PROJECT / "demonstration.py"), "--local", "--endpoints", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "not found" in run.stderr
