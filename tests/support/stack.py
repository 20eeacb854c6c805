"""A real local stack (``python -m scripts.local``) for tests that drive it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.processes import start_local, stop, wait_ready


@contextmanager
def running_stack(workdir: Path) -> Iterator[dict[str, Any]]:
    """Start the stack in ``workdir`` (its log in ``server.log``), yield its
    endpoints once it answers, and stop it with every child it started."""
    with open(workdir / "server.log", "wb") as log:
        proc = start_local(log, workdir)
    try:
        yield wait_ready(proc, workdir / ".local" / "endpoints.json", timeout=60)
    finally:
        assert stop(proc, set()) == []
