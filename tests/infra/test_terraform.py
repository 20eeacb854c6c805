"""Static checks of the overlay and the packaged stack: fmt, validate, terraform test, checkov."""

from __future__ import annotations

import json
import subprocess

from infra import tfcli
from tests.infra.conftest import INFRA, ROOT, require_tool

CHECKOV = ROOT / ".venv-infra" / "bin" / "checkov"


def test_fmt(tf_env):
    proc = tfcli.terraform(["fmt", "-check", "-recursive", "-diff", "-no-color", str(INFRA)], ROOT, tf_env, check=False)
    assert proc.returncode == 0, f"run `terraform fmt -recursive infra`:\n{proc.stdout}{proc.stderr}"


def test_validate(initialized_stack, tf_env):
    proc = tfcli.terraform(["validate", "-json", "-no-color"], initialized_stack, tf_env, check=False)
    result = json.loads(proc.stdout)
    assert result["valid"], json.dumps(result["diagnostics"], indent=1)
    errors = [d for d in result["diagnostics"] if d["severity"] == "error"]
    assert not errors


def test_terraform_test_wiring(initialized_stack, tf_env):
    """infra/tests/*.tftest.hcl with a mocked AWS provider."""
    proc = tfcli.terraform(["test", "-no-color"], initialized_stack, tf_env, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert " 0 failed" in proc.stdout and "Success!" in proc.stdout


def test_checkov_finds_nothing(packaged_stack):
    """Zero failed checks on the packaged stack; skips are justified beside each (see infra/.checkov.yaml)."""
    require_tool(str(CHECKOV) if CHECKOV.exists() else None, "checkov missing: run `make infra-venv`")
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(packaged_stack), "--config-file", str(INFRA / ".checkov.yaml"), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    frameworks = {r["check_type"]: r["summary"] for r in reports}
    assert {"terraform", "terraform_json"} <= set(frameworks), frameworks  # both files kinds were scanned
    failed = [
        (c["check_id"], c["resource"], c["file_path"]) for r in reports for c in r["results"].get("failed_checks", [])
    ]
    assert not failed, failed
    assert all(s["parsing_errors"] == 0 for s in frameworks.values()), frameworks
    assert frameworks["terraform"]["passed"] > 50, frameworks  # the overlay really was scanned
    assert proc.returncode == 0, proc.stderr[-4000:]
