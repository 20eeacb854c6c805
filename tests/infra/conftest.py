"""Infra fixtures: package the real app once per session into a temp build dir.

The packaged stack never goes to build/stacks, which may hold the state of a
real deployment.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from infra import stack, tfcli

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist worker takes every infra test (``--dist loadgroup``): each
    worker's session would otherwise run `chalice package` of the same
    project at once, and they collide in its .chalice/deployments cache."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.xdist_group("infra"))


def require_tool(path: str | None, hint: str) -> str:
    """Return ``path`` or fail the test with how to get the tool (never skip: CI must run it)."""
    if not path:
        pytest.fail(hint)
    return path


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("infra-build")


@pytest.fixture(scope="session")
def chalice_output(build_dir) -> tuple[Path, str]:
    """`chalice package --pkg-format terraform` of this repo's app (stage dev): (dir, printed output)."""
    chalice = require_tool(
        shutil.which("chalice", path=str(Path(sys.executable).parent)), "chalice is not in the venv: run `make venv`"
    )
    out = build_dir / "chalice"
    return out, stack.run_chalice_package(ROOT, "dev", out, chalice)


@pytest.fixture(scope="session")
def packaged_stack(chalice_output, build_dir) -> Path:
    """The assembled stack directory (transformed chalice.tf.json + overlay + zip)."""
    return stack.assemble_stack(chalice_output[0], INFRA, build_dir / "stack")


@pytest.fixture(scope="session")
def tf_env(build_dir) -> dict[str, str]:
    require_tool(shutil.which("terraform"), "terraform is not installed (>= 1.7 needed)")
    return tfcli.cli_env(build_dir)


@pytest.fixture(scope="session")
def initialized_stack(packaged_stack, tf_env) -> Path:
    """The packaged stack after `terraform init` (offline through the provider mirror when present)."""
    tfcli.terraform(["init", "-input=false", "-backend=false", "-no-color"], packaged_stack, tf_env)
    return packaged_stack
