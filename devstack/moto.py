"""A real moto server on loopback (local S3), started and stopped by its owner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent exits."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: stop() is then the only way it ends


class MotoServer:
    """``moto_server`` in a child process; ``endpoint`` is its URL.

    ``command`` replaces the ``moto_server`` executable (e.g. a patched
    server script run by a Python interpreter); ``-H 127.0.0.1 -p PORT`` are
    appended to it. ``log`` receives the server's output (default: dropped).
    """

    def __init__(
        self, port: int | None = None, command: Sequence[str] | None = None, log: IO[bytes] | IO[str] | None = None
    ) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # Default: moto_server with ranged GETs that read only their range
        # (devstack/moto_ranges.py), run as a module from the project root: as a
        # script, devstack/moto.py would shadow the moto package.
        self.command = list(command) if command else [sys.executable, "-m", "devstack.moto_ranges"]
        self.cwd = None if command else str(Path(__file__).resolve().parent.parent)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        """Start the server and wait until it answers; raises RuntimeError otherwise."""
        out = self.log if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [*self.command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT if self.log is not None else subprocess.DEVNULL,
            env={**os.environ, "MOTO_CALL_RESET_API": "true"},
            cwd=self.cwd,
            # Own session: a Ctrl-C aimed at our process group must not kill
            # S3 under a handler that is still running; stop() ends it.
            start_new_session=True,
            # ...and if we die without calling stop() (SIGKILL), so does it.
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited at start (status {self.proc.returncode})")
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        """Terminate the server (kill after 10 s) and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
