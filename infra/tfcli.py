"""Run the terraform CLI the same way from make, the rehearsal and the tests.

Build-time code only.  Offline machines carry the AWS provider in a
filesystem mirror; when the mirror directory exists, a CLI config pointing at
it is written under the build directory and passed through
``TF_CLI_CONFIG_FILE``.  Without it (a machine with internet) terraform's
defaults apply, so plain ``terraform init`` keeps working.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

DEFAULT_MIRROR = "/opt/tf-plugins"


def cli_env(build_dir: Path, mirror: str | None = None) -> dict[str, str]:
    """Return os.environ plus what terraform needs here; writes ``build_dir/terraformrc`` if a mirror exists."""
    mirror = mirror if mirror is not None else os.environ.get("TF_PLUGIN_MIRROR", DEFAULT_MIRROR)
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    build_dir = Path(build_dir).resolve()
    if mirror and Path(mirror).is_dir():
        build_dir.mkdir(parents=True, exist_ok=True)
        cache = build_dir / "tf-plugin-cache"  # links instead of copying the ~600 MB provider per init
        cache.mkdir(exist_ok=True)
        rc = build_dir / "terraformrc"
        rc.write_text(
            f'plugin_cache_dir = "{cache}"\n'
            "provider_installation {\n"
            f'  filesystem_mirror {{\n    path    = "{Path(mirror).resolve()}"\n'
            '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
            '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
        )
        env["TF_CLI_CONFIG_FILE"] = str(rc)
    elif env.get("TF_CLI_CONFIG_FILE") and not Path(env["TF_CLI_CONFIG_FILE"]).exists():
        del env["TF_CLI_CONFIG_FILE"]  # a dangling setting only produces warnings
    return env


def build_dir_of(stack_dir: Path) -> Path:
    """The build directory a stack folder lives in: ``<build>/stacks/<stage>`` -> ``<build>``
    (the CLI config and plugin cache go there, not beside the stages)."""
    stack_dir = Path(stack_dir)
    return stack_dir.parent.parent if stack_dir.parent.name == "stacks" else stack_dir.parent


def terraform(
    args: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform <args>`` without colour or prompts; raise with its output if ``check`` and it fails."""
    proc = subprocess.run(
        ["terraform", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"terraform {' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


if __name__ == "__main__":
    # `python -m infra.tfcli BUILD_DIR` prints the TF_CLI_CONFIG_FILE to export (empty: none needed).
    import sys

    print(cli_env(Path(sys.argv[1] if len(sys.argv) > 1 else "build")).get("TF_CLI_CONFIG_FILE", ""))
