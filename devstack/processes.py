"""A local stack as a child process: start it, wait until it serves, stop all of it.

Used by ``make demo`` (demo/run_local.py) and the end-to-end tests. The
stack is ``python -m scripts.local`` on free ports; it writes
``.local/endpoints.json`` with its own pid, so a stale file from a killed
run is told apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), e.g. the moto server of the local stack."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def start_local(log: IO[bytes], workdir: Path, port: int = 0) -> subprocess.Popen[bytes]:
    """Start ``python -m scripts.local`` (moto S3 + API + event watcher), output to ``log``.

    Its ``.local/`` (endpoints file, store) goes to ``workdir``.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.local", "--port", str(port), "--workdir", str(workdir)],
        cwd=PROJECT_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def wait_ready(proc: subprocess.Popen[bytes], endpoints: Path, timeout: float) -> dict[str, Any]:
    """The endpoints document once this server wrote it and answers /health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local stack exited with status {proc.returncode} during start-up")
        try:
            doc = json.loads(endpoints.read_text())
        except (OSError, ValueError):
            doc = None
        if doc and doc.get("pid") == proc.pid:
            try:
                with urllib.request.urlopen(doc["api_url"] + "/health", timeout=2) as r:
                    if r.status == 200:
                        return dict(doc)
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"local stack not healthy within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes], started_children: set[int], grace: float = 20.0) -> list[int]:
    """Stop the server and its children; returns the pids still alive afterwards."""
    started_children |= set(children(proc.pid))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in started_children):
        time.sleep(0.1)
    for pid in started_children:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)  # only pids this run started (via the local stack)
            except ProcessLookupError:
                pass
    time.sleep(0.2)
    return [p for p in [proc.pid, *started_children] if alive(p)]
