"""`make demo`: the demonstration client against a local stack it starts and stops.

1. Starts the local stack (devstack: moto S3 + chalice local + S3-event
   watcher) on free ports, in a private working directory: its store and
   endpoints file are its own, so a running `make local` is not disturbed.
2. Waits until that stack's endpoints file names its pid and ``GET /health``
   is 200.
3. Runs ``demonstration.py --local`` against it.
4. Stops the stack with SIGTERM (its own shutdown stops moto, whose bucket
   goes with it), falls back to SIGKILL of exactly the processes it started,
   checks that none of them is left, and deletes the private store: nothing
   the demo stored stays behind.

The exit status is the client's, or non-zero if the stack would not start
or would not stop.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.processes import children, start_local, stop, wait_ready

PROJECT_DIR = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Start, demonstrate, stop, clean up; exit with the client's status."""
    parser = argparse.ArgumentParser(prog="make demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the local stack to be healthy (default: %(default)s)",
    )
    parser.add_argument("client_args", nargs="*", help="extra arguments for demonstration.py (after --)")
    args = parser.parse_args(argv)

    log_dir = PROJECT_DIR / ".local"
    log_dir.mkdir(exist_ok=True)
    server_log = log_dir / "demo-server.log"
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=log_dir))
    endpoints = workdir / ".local" / "endpoints.json"
    with open(server_log, "wb") as log:
        proc = start_local(log, workdir)
    seen_children: set[int] = set()
    status = 1
    try:
        print(f"Starting the local stack (server log: {server_log.relative_to(PROJECT_DIR)}) ...", flush=True)
        wait_ready(proc, endpoints, args.start_timeout)
        seen_children |= set(children(proc.pid))
        # The client reads a copy: the stack removes its file on shutdown.
        snapshot = workdir / "endpoints-snapshot.json"
        shutil.copyfile(endpoints, snapshot)
        status = subprocess.call(
            [
                sys.executable,
                str(PROJECT_DIR / "demonstration.py"),
                "--local",
                "--endpoints",
                str(snapshot),
                *args.client_args,
            ],
            cwd=PROJECT_DIR,
        )
    except (RuntimeError, OSError) as exc:
        print(f"demo: {exc}; last lines of {server_log}:", file=sys.stderr)
        print("\n".join(server_log.read_text(errors="replace").splitlines()[-20:]), file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    finally:
        left = stop(proc, seen_children)
        if left:
            print(f"demo: processes still running after stop: {left}; kept {workdir}", file=sys.stderr)
            status = status or 1
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print("Local stack stopped; no process left behind; the demo's store and bucket are gone.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
