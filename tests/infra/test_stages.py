"""One state per stage: `make package STAGE=...` (infra/stack.py main) builds
each stage into its own build/stacks/<stage>, takes the environment from the
stage, and never touches another stage's state or tfvars; a stack packaged
before per-stage folders (build/stack) is moved explicitly, state included.
"""

from __future__ import annotations

import json
import stat

import pytest

from infra import stack
from tests.infra.conftest import ROOT

STATE = '{"version": 4, "serial": 7, "lineage": "dev-lineage"}\n'


@pytest.fixture
def fake_chalice(chalice_output, tmp_path):
    """A `chalice` that writes the real app's package output (packaged once per session) to its last argument."""
    source = chalice_output[0]
    script = tmp_path / "chalice"
    script.write_text(
        "#!/bin/sh\nfor out; do :; done\n"
        f'mkdir -p "$out" && cp "{source}/chalice.tf.json" "{source}/deployment.zip" "$out/"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def package(build, stage, chalice):
    return stack.main(["--app-dir", str(ROOT), "--stage", stage, "--build-dir", str(build), "--chalice", chalice])


def snapshot(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_each_stage_builds_into_its_own_folder_with_its_environment(tmp_path, fake_chalice):
    build = tmp_path / "build"
    assert package(build, "dev", fake_chalice) == 0
    dev = build / "stacks" / "dev"
    (dev / "terraform.tfstate").write_text(STATE)
    (dev / "terraform.tfvars").write_text('region = "eu-west-1"\n')
    (dev / ".terraform").mkdir()
    (dev / ".terraform" / "terraform.tfstate").write_text("{}")
    before = snapshot(dev)

    assert package(build, "prod", fake_chalice) == 0
    prod = build / "stacks" / "prod"
    assert snapshot(dev) == before, "packaging prod changed dev's folder"
    assert json.loads((prod / stack.STAGE_VARS_FILE).read_text()) == {"environment": "prod"}
    assert json.loads((dev / stack.STAGE_VARS_FILE).read_text()) == {"environment": "dev"}
    assert not (prod / "terraform.tfstate").exists() and not (prod / "terraform.tfvars").exists()
    assert (prod / "chalice.tf.json").exists() and (prod / "deployment.zip").exists()
    assert not (build / "stack").exists()

    # Re-packaging dev keeps its state and tfvars, and prod's folder stays as it was.
    prod_before = snapshot(prod)
    assert package(build, "dev", fake_chalice) == 0
    assert (dev / "terraform.tfstate").read_text() == STATE
    assert (dev / "terraform.tfvars").read_text() == 'region = "eu-west-1"\n'
    assert snapshot(prod) == prod_before


def test_a_stage_whose_tfvars_name_another_environment_is_refused_untouched(tmp_path, fake_chalice, capsys):
    build = tmp_path / "build"
    prod = build / "stacks" / "prod"
    prod.mkdir(parents=True)
    (prod / "terraform.tfvars").write_text('environment = "dev"\n')
    (prod / "terraform.tfstate").write_text(STATE)
    before = snapshot(prod)
    assert package(build, "prod", fake_chalice) == 1
    assert "environment comes from the stage" in capsys.readouterr().err
    assert snapshot(prod) == before


def test_packaging_refuses_while_a_pre_stage_build_stack_exists(tmp_path, fake_chalice, capsys):
    build = tmp_path / "build"
    (build / "stack").mkdir(parents=True)
    (build / "stack" / "terraform.tfstate").write_text(STATE)
    assert package(build, "prod", fake_chalice) == 1
    assert "make migrate-stack" in capsys.readouterr().err
    assert not (build / "stacks").exists()
    assert (build / "stack" / "terraform.tfstate").read_text() == STATE


@pytest.mark.parametrize(("tfvars", "environment"), [(None, "dev"), ('environment = "prod"\nregion = "x"\n', "prod")])
def test_migrate_moves_the_pre_stage_stack_with_its_state(tmp_path, tfvars, environment):
    build = tmp_path / "build"
    legacy = build / "stack"
    (legacy / ".terraform" / "providers").mkdir(parents=True)
    (legacy / "terraform.tfstate").write_text(STATE)
    (legacy / ".terraform.lock.hcl").write_text("# lock\n")
    if tfvars:
        (legacy / "terraform.tfvars").write_text(tfvars)
    before = snapshot(legacy)
    assert stack.main(["--migrate", "--build-dir", str(build)]) == 0
    target = build / "stacks" / environment
    assert not legacy.exists() and snapshot(target) == before
    assert (target / ".terraform" / "providers").is_dir()
    # Nothing left to move the second time.
    assert stack.migrate_legacy_stack(build) is None


def test_migrate_never_merges_into_an_existing_stage(tmp_path):
    build = tmp_path / "build"
    (build / "stack").mkdir(parents=True)
    (build / "stack" / "terraform.tfstate").write_text(STATE)
    (build / "stacks" / "dev").mkdir(parents=True)
    (build / "stacks" / "dev" / "terraform.tfstate").write_text("{}")
    with pytest.raises(stack.StackError, match="both exist"):
        stack.migrate_legacy_stack(build)
    assert (build / "stack" / "terraform.tfstate").read_text() == STATE
    assert (build / "stacks" / "dev" / "terraform.tfstate").read_text() == "{}"


def test_stage_names_are_environment_names(tmp_path):
    with pytest.raises(stack.StackError, match="lowercase"):
        stack.stage_stack_dir(tmp_path, "Prod/../dev")


def test_terraform_config_goes_to_the_build_dir_not_beside_the_stages(tmp_path):
    from infra import tfcli

    assert tfcli.build_dir_of(tmp_path / "build" / "stacks" / "prod") == tmp_path / "build"
    assert tfcli.build_dir_of(tmp_path / "elsewhere" / "stack") == tmp_path / "elsewhere"
