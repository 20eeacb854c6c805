"""``python -m efsml_client`` in a subprocess, for the client's tests (docs/client.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]


def cli(url: str, *args: Any, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, Any, str]:
    """Run the CLI with ``--url url``: (exit code, stdout as JSON, or its text if not JSON, stderr).

    The EFSML_* variables of the test's own environment are left out; ``env`` adds to it.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EFSML_")}
    run = subprocess.run(
        [sys.executable, "-m", "efsml_client", "--url", url, *map(str, args)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, **(env or {})},
    )
    assert "Traceback" not in run.stderr, run.stderr
    try:
        out = json.loads(run.stdout)
    except ValueError:
        out = run.stdout
    return run.returncode, out, run.stderr


def error_line(stderr: str) -> dict[str, Any]:
    """The one JSON error line the CLI prints on stderr."""
    lines = [l for l in stderr.splitlines() if l.startswith("{")]
    assert len(lines) == 1, stderr
    found: dict[str, Any] = json.loads(lines[0])
    return found
