"""The contract run (issue 21): schemathesis fuzzes a real local server
(``python -m scripts.local``: chalice local, moto S3, the event watcher, on
127.0.0.1) against docs/openapi.yaml, bounded in examples, and must find no
server error (5xx) and no response the document does not describe (status,
content type, headers, body schema).

The store is seeded first with what the document's examples name (``mlp.onnx``
in two versions, the inputs ``x.json`` and ``rows.npy``), so the examples and part of the
generated cases reach the models, not only validation. Two runs: every
operation but DELETE, then the DELETEs (which remove the seeded objects).
``OPENAPI_FUZZ_EXAMPLES`` raises the bound, ``OPENAPI_FUZZ_SEED`` changes the
seed, ``OPENAPI_FUZZ_PHASES`` picks schemathesis' phases (``stateful``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy

from tests.support.onnx_models import Mlp
from tests.support.openapi import DOCUMENT, JOBS_PATHS, JOBS_ROUTES_MERGED, operations
from tests.support.stack import running_stack

#: What a response must satisfy (schemathesis' check names).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
)
EXAMPLES = int(os.environ.get("OPENAPI_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("OPENAPI_FUZZ_SEED", "21"))


def _ingest(url: str, filename: str, data: bytes) -> None:
    body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": filename}
    request = urllib.request.Request(
        url + "/ingest", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def seed(url: str) -> None:
    """The objects the document's examples name."""
    for version in (0, 1):
        _ingest(url, "mlp.onnx", Mlp.random(seed=version).onnx_bytes())
    _ingest(url, "inputs/x.json", json.dumps({"x": [[0.1, 0.2, 0.3, 0.4]]}).encode())
    rows = io.BytesIO()
    numpy.save(rows, numpy.arange(32, dtype=numpy.float32).reshape(8, 4))
    _ingest(url, "inputs/rows.npy", rows.getvalue())  # the job example's input


def fuzz(url: str, report: Path, *select: str) -> subprocess.CompletedProcess[str]:
    """One bounded schemathesis run of the operations ``select`` picks
    (schemathesis' filter options); its JSON report goes to ``report``."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(DOCUMENT),
        "--url",
        url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        os.environ.get("OPENAPI_FUZZ_PHASES", "examples,coverage,fuzzing"),
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *select,
    ]
    if not JOBS_ROUTES_MERGED:
        command += ["--exclude-path-regex", "^(" + "|".join(sorted(JOBS_PATHS)) + ")$"]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=240, cwd=report.parent, env={**os.environ, "NO_COLOR": "1"}
    )


def test_the_local_server_answers_as_the_document_says(tmp_path):
    with running_stack(tmp_path) as endpoints:
        url = endpoints["api_url"]
        seed(url)
        started = time.monotonic()
        runs = {
            "most": fuzz(url, tmp_path / "most.json", "--exclude-method", "DELETE"),
            "deletes": fuzz(url, tmp_path / "deletes.json", "--include-method", "DELETE"),
        }
        seconds = time.monotonic() - started
        log = (tmp_path / "server.log").read_text(errors="replace")
    tested = generated = 0
    for name, run in runs.items():
        report = json.loads((tmp_path / f"{name}.json").read_text())
        cases, ops = report["test_cases"], report["operations"]
        assert run.returncode == 0 and report["failures"] == [] and report["errors"] == [], run.stdout[-6000:]
        assert ops["tested"] == ops["selected"] > 0
        tested, generated = tested + ops["tested"], generated + cases["generated"]
    # The figures, for the closing note (pytest -s shows them).
    print(f"\nschemathesis: {tested} operations, {generated} test cases, 0 failures in {seconds:.1f} s")
    assert tested == len(operations()) and generated >= 10 * tested
    assert "Traceback" not in log, log[-4000:]
