"""Run a documentation page's bash block as written (tests that keep the docs' commands true)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_block(script: str, cwd: Path, timeout: float = 60) -> str:
    """Run ``script`` with ``bash -euo pipefail`` in ``cwd``; its stdout, once it succeeded."""
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, (script, run.stdout, run.stderr)
    return run.stdout
