"""`make demo`: the demonstration client against a local stack it starts and stops.

1. Starts ``scripts/local.py`` (moto S3 + chalice local + S3-event watcher)
   on free ports, with its own endpoints file.
2. Waits until that file names the server's pid and ``GET /health`` is 200.
3. Runs ``demonstration.py --local`` against it.
4. Stops the server with SIGTERM (its own shutdown stops moto), falls back
   to SIGKILL of exactly the processes it started (the server and the
   children it had), then checks that none of them is left.

The exit status is the client's, or non-zero if the stack would not start
or would not stop.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), e.g. the moto server of local.py."""
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


def wait_ready(proc: subprocess.Popen, endpoints: Path, timeout: float) -> dict:
    """The endpoints document once this server wrote it and answers /health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scripts/local.py exited with status {proc.returncode} during start-up")
        try:
            doc = json.loads(endpoints.read_text())
        except (OSError, ValueError):
            doc = None
        if doc and doc.get("pid") == proc.pid:
            try:
                with urllib.request.urlopen(doc["api_url"] + "/health", timeout=2) as r:
                    if r.status == 200:
                        return doc
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"local stack not healthy within {timeout:.0f}s")


def stop(proc: subprocess.Popen, started_children: set[int], grace: float = 20.0) -> list[int]:
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
                os.kill(pid, signal.SIGKILL)  # only pids this run started (via local.py)
            except ProcessLookupError:
                pass
    time.sleep(0.2)
    return [p for p in [proc.pid, *started_children] if alive(p)]


def main(argv: list[str] | None = None) -> int:
    """Start, demonstrate, stop; exit with the client's status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-timeout", type=float, default=90.0)
    parser.add_argument("client_args", nargs="*", help="extra arguments for demonstration.py (after --)")
    args = parser.parse_args(argv)

    log_dir = PROJECT_DIR / ".local"
    log_dir.mkdir(exist_ok=True)
    endpoints = log_dir / "endpoints.json"
    server_log = log_dir / "demo-server.log"
    # local.py writes .local/endpoints.json; a stale one from a killed run
    # is told apart by its pid.
    with open(server_log, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "scripts" / "local.py"), "--port", "0"],
            cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    seen_children: set[int] = set()
    status = 1
    try:
        print(f"Starting the local stack (server log: {server_log.relative_to(PROJECT_DIR)}) ...", flush=True)
        wait_ready(proc, endpoints, args.start_timeout)
        seen_children |= set(children(proc.pid))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as snapshot:
            # The client reads a copy: local.py removes its file on shutdown.
            snapshot.write(endpoints.read_text())
        try:
            status = subprocess.call([sys.executable, str(PROJECT_DIR / "demonstration.py"), "--local",
                                      "--endpoints", snapshot.name, *args.client_args], cwd=PROJECT_DIR)
        finally:
            os.unlink(snapshot.name)
    except (RuntimeError, OSError) as exc:
        print(f"demo: {exc}; last lines of {server_log}:", file=sys.stderr)
        print("\n".join(server_log.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        left = stop(proc, seen_children)
        if left:
            print(f"demo: processes still running after stop: {left}", file=sys.stderr)
            status = status or 1
        else:
            print("Local stack stopped; no process left behind.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
