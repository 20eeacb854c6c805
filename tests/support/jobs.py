"""Batch-job tests over HTTP: a local stack with job settings, and small request helpers."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests

from devstack.processes import start_local, stop, wait_ready


@contextmanager
def local_stack(workdir: Path, **env: str) -> Iterator[tuple[dict[str, Any], Path, Any]]:
    """``python -m scripts.local`` with ``env`` set (JOB_WORKERS, ...): endpoints, their file, the process.

    On exit, asserts that everything the stack started has stopped.
    """
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with open(workdir / "server.log", "wb") as log:
            proc = start_local(log, workdir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    endpoints_file = workdir / ".local" / "endpoints.json"
    try:
        yield wait_ready(proc, endpoints_file, timeout=90), endpoints_file, proc
    finally:
        assert stop(proc, set()) == [], "something the stack started is still running"


def api(endpoints: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One JSON request to the stack's API: (status, body)."""
    r = requests.request(method, endpoints["api_url"] + path, json=body, timeout=30)
    return r.status_code, r.json()


def npy(array: np.ndarray) -> bytes:
    """``array`` as the bytes of an ``.npy`` file."""
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def ingest(endpoints: dict[str, Any], filename: str, data: bytes) -> None:
    """``POST /ingest`` inline (base64), asserting it landed."""
    body = {"filename": filename, "data": base64.b64encode(data).decode(), "encoding": "base64"}
    status, answer = api(endpoints, "POST", "/ingest", body)
    assert status == 200, answer


def plan_doc(job_id: str, blocks: int, created_at: str, model: str = "models/m.onnx") -> dict[str, Any]:
    """A minimal job plan (``job.json``) of ``blocks`` blocks of 10 rows of ``inputs/x.npy``, for state tests."""
    return {
        "jobId": job_id,
        "model": {"key": model, "version": 1, "sha256": "x"},
        "source": {"input": "inputs/x.npy"},
        "batchSize": 10,
        "inputs": [{"key": "inputs/x.npy"}],
        "blocks": [{"input": 0, "start": 10 * i, "stop": 10 * i + 10} for i in range(blocks)],
        "createdAt": created_at,
    }
