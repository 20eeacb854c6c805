"""Security review of the deployed shape, read from what `infra/stack.py`
actually packages (chalice.tf.json after its transformations, plus the
infra/*.tf overlay). What error bodies may contain is checked in
tests/reliability/test_error_bodies_leak_nothing.py.

The overlay is HCL; rather than a new parser dependency, blocks are cut out
by brace matching and their few attributes read with regular expressions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(packaged_stack):
    """The packaged stack of the dev stage (prod shares its shape), packaged
    once per session by tests/infra/conftest.py, as `make package` does."""
    return packaged_stack


def block(text: str, header: str) -> str:
    """The body of the HCL block whose header matches regex ``header``."""
    m = re.search(header + r"\s*\{", text)
    assert m, f"no block {header!r}"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end() : i - 1]


def statements(policy_body: str) -> list[dict]:
    out, rest = [], policy_body
    while "statement" in rest:
        body = block(rest, r"\bstatement")
        rest = rest[rest.index(body) + len(body) :]
        lists = {
            k: re.findall(r'"([^"]+)"', v)
            for k, v in re.findall(r"\b(actions|resources|identifiers|values)\s*=\s*\[(.*?)\]", body, re.S)
        }
        out.append(
            {
                "effect": (re.findall(r'effect\s*=\s*"(\w+)"', body) or ["Allow"])[0],
                "actions": lists.get("actions", []),
                "resources": lists.get("resources", []) + re.findall(r"resources\s*=\s*\[(aws_[\w.]+)\]", body),
                "condition": dict(zip(("test", "variable"), re.findall(r'(?:test|variable)\s*=\s*"([^"]+)"', body)))
                | {"values": lists.get("values", [])},
            }
        )
    return out


def tf(stack, name):
    return (stack / name).read_text()


def test_every_api_operation_needs_an_api_key(stack):
    template = json.loads(tf(stack, "chalice.tf.json"))
    swagger = json.loads(template["locals"]["chalice_api_swagger"])
    assert swagger["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    ops = [(p, m, op) for p, ops in swagger["paths"].items() for m, op in ops.items() if m != "options"]
    assert {p for p, _, _ in ops} >= {"/ingest", "/predict", "/health"}
    open_ops = [(p, m) for p, m, op in ops if op.get("security") != [{"api_key": []}]]
    assert open_ops == [], f"operations callable without a key: {open_ops}"
    # The key is issued and bound to the deployed stage through a usage plan.
    api = tf(stack, "api.tf")
    plan = block(api, r'resource "aws_api_gateway_usage_plan" "\w+"')
    assert re.search(r"api_id\s*=\s*aws_api_gateway_rest_api\.rest_api\.id", plan)
    assert re.search(r"stage\s*=\s*aws_api_gateway_(deployment|stage)\.rest_api\.stage_name", plan)
    assert re.search(r'key_type\s*=\s*"API_KEY"', block(api, r'resource "aws_api_gateway_usage_plan_key" "\w+"'))


def test_iam_auth_signs_every_api_operation(stack):
    """var.api_auth = "iam": the SigV4 body (Chalice's IAMAuthorizer) covers every operation the key body does."""
    template = json.loads(tf(stack, "chalice.tf.json"))
    keyed = json.loads(template["locals"]["chalice_api_swagger"])
    signed = json.loads(template["locals"]["chalice_api_swagger_iam"])
    assert signed["paths"].keys() == keyed["paths"].keys()
    ops = [(p, m, op) for p, ops in signed["paths"].items() for m, op in ops.items() if m != "options"]
    assert ops and all(op["security"] == [{"sigv4": []}] for _, _, op in ops)
    assert set(signed["securityDefinitions"]) == {"sigv4"}
    assert template["resource"]["aws_api_gateway_rest_api"]["rest_api"]["body"] == "${local.api_body}"


def test_local_stage_is_never_packaged():
    # Only `chalice local` serves the open local stage.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.stack",
            "--app-dir",
            str(REPO),
            "--stage",
            "local",
            "--build-dir",
            "/nonexistent-never-written",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "local stage" in proc.stderr


def _s3_grants(policy: list[dict]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for st in policy:
        assert st["effect"] == "Allow"
        for action in st["actions"]:
            assert action != "*" and not action.endswith(":*"), f"wildcard action {action}"
            if action.startswith("s3:"):
                grants.setdefault(action, set()).update(st["resources"])
    return grants


def test_lambda_s3_scope_is_least_privilege(stack):
    template = json.loads(tf(stack, "chalice.tf.json"))
    # Chalice's autogenerated policy (s3:* on *) must not be in the package.
    assert "aws_iam_role_policy" not in template["resource"]
    roles = {name: f["role"] for name, f in template["resource"]["aws_lambda_function"].items()}
    # Only the API function gets the writing role, the sweep its own role
    # without S3; every other function (the S3-event handler, anything added
    # later) gets the read-only default.
    assert roles.pop("api_handler") == "${aws_iam_role.api.arn}"
    assert roles.pop("reclaim_debris") == "${aws_iam_role.sweeper.arn}"
    assert roles.pop("run_job_blocks") == "${aws_iam_role.jobs.arn}"  # batch jobs (infra/jobs.tf), below
    assert roles.pop("fail_dead_blocks") == "${aws_iam_role.job_dead_letters.arn}"  # their dead letters, below
    assert roles and set(roles.values()) == {"${aws_iam_role.lambda.arn}"}
    iam = tf(stack, "iam.tf")
    bucket = "${aws_s3_bucket.models.arn}"
    sources = r"source_policy_documents\s*=\s*\[\s*data\.aws_iam_policy_document\.function_base\.json,\s*"
    # The default role: read models/ and inputs/, list only this bucket; no
    # write, no delete, no other prefix, no other bucket.
    lambda_doc = block(iam, r'data "aws_iam_policy_document" "lambda"')
    assert re.search(sources + r"data\.aws_iam_policy_document\.read_bucket\.json,?\s*\]", lambda_doc)
    read = _s3_grants(statements(block(iam, r'data "aws_iam_policy_document" "read_bucket"')))
    assert read == {
        "s3:GetObject": {f"{bucket}/models/*", f"{bucket}/inputs/*"},
        "s3:ListBucket": {"aws_s3_bucket.models.arn"},
    }, read
    assert _s3_grants(statements(lambda_doc)) == {}
    assert _s3_grants(statements(block(iam, r'data "aws_iam_policy_document" "function_base"'))) == {}
    # The sweep: EFS and its logs, nothing of S3.
    sweeper_doc = block(iam, r'data "aws_iam_policy_document" "sweeper"')
    assert "read_bucket" not in sweeper_doc and _s3_grants(statements(sweeper_doc)) == {}
    # The API role adds (on top of the base and read documents) writes to
    # outputs/, and to the upload prefixes only while an upload route
    # exists: S3 authorises a presigned PUT against the signer's rights.
    api_doc = block(iam, r'data "aws_iam_policy_document" "api"')
    assert re.search(sources + r"data\.aws_iam_policy_document\.read_bucket\.json,?\s*\]", api_doc)
    extra = _s3_grants(statements(api_doc))
    assert set(extra) == {"s3:PutObject", "s3:DeleteObject"}, extra
    # DELETE /models|inputs/{name} deletes the S3 object: exactly DeleteObject there.
    assert extra.pop("s3:DeleteObject") == {f"{bucket}/models/*", f"{bucket}/inputs/*"}
    swagger_paths = json.loads(template["locals"]["chalice_api_swagger"])["paths"]
    assert "delete" in swagger_paths["/models/{name}"] and "delete" in swagger_paths["/inputs/{name}"]
    assert f"{bucket}/outputs/*" in extra["s3:PutObject"]
    writes = extra["s3:PutObject"] - {f"{bucket}/outputs/*"}
    if writes:
        swagger = json.loads(template["locals"]["chalice_api_swagger"])
        assert "/uploads" in swagger["paths"], "PutObject beyond outputs/ without an upload route"
        assert writes == {f"{bucket}/models/*", f"{bucket}/inputs/*"}, writes
        assert re.search(r'sid\s*=\s*"SignUploadUrls"', api_doc)
    # Batch jobs: the worker archives assembled outputs (a multipart upload)
    # and reads nothing from S3; the API adds GetObject on outputs/ only, to
    # sign the results' GET URLs.
    jobs_tf = tf(stack, "jobs.tf")
    jobs_doc = block(jobs_tf, r'data "aws_iam_policy_document" "jobs"')
    assert "read_bucket" not in jobs_doc
    assert _s3_grants(statements(jobs_doc)) == {
        "s3:PutObject": {f"{bucket}/outputs/*"},
        "s3:AbortMultipartUpload": {f"{bucket}/outputs/*"},
    }
    assert _s3_grants(statements(block(jobs_tf, r'data "aws_iam_policy_document" "api_jobs"'))) == {
        "s3:GetObject": {f"{bucket}/outputs/*"}
    }
    # The dead letters' recorder writes on EFS only: nothing of S3.
    dead_doc = block(jobs_tf, r'data "aws_iam_policy_document" "job_dead_letters"')
    assert "read_bucket" not in dead_doc and _s3_grants(statements(dead_doc)) == {}


def _deny_insecure(statement: dict) -> bool:
    c = statement["condition"]
    return (
        statement["effect"] == "Deny"
        and c.get("test") == "Bool"
        and c.get("variable") == "aws:SecureTransport"
        and c["values"] == ["false"]
    )


def test_s3_events_created_and_removed_reach_the_handler_for_both_prefixes(stack):
    template = json.loads(tf(stack, "chalice.tf.json"))
    (notification,) = template["resource"]["aws_s3_bucket_notification"].values()
    subscriptions = {s["filter_prefix"]: s for s in notification["lambda_function"]}
    assert set(subscriptions) == {"models/", "inputs/"}
    for s in subscriptions.values():
        # ObjectRemoved deletes the store copy (DELETE through S3, the system of record).
        assert sorted(s["events"]) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], s
        assert "on_object_created" in s["lambda_function_arn"]


def test_s3_bucket_policy_is_tls_only(stack):
    s3tf = tf(stack, "s3.tf")
    policy = statements(block(s3tf, r'data "aws_iam_policy_document" "bucket"'))
    deny = [st for st in policy if _deny_insecure(st)]
    assert deny and deny[0]["actions"] == ["s3:*"]
    assert set(deny[0]["resources"]) >= {"${aws_s3_bucket.models.arn}/*"}
    assert re.search(r"resources\s*=\s*\[aws_s3_bucket\.models\.arn,", s3tf), "bucket itself not covered"
    pab = block(s3tf, r'resource "aws_s3_bucket_public_access_block" "models"')
    assert len(re.findall(r"=\s*true", pab)) == 4


def test_efs_is_encrypted_tls_only_and_mounted_through_the_access_point(stack):
    efs = tf(stack, "efs.tf")
    assert re.search(r"encrypted\s*=\s*true", block(efs, r'resource "aws_efs_file_system" "this"'))
    policy = statements(block(efs, r'data "aws_iam_policy_document" "efs"'))
    assert any(_deny_insecure(st) and st["actions"] == ["*"] for st in policy), policy
    template = json.loads(tf(stack, "chalice.tf.json"))
    for name, fn in template["resource"]["aws_lambda_function"].items():
        assert fn["file_system_config"] == {
            "arn": "${aws_efs_access_point.lambda.arn}",
            "local_mount_path": "/mnt/efs",
        }, name
        assert fn["vpc_config"]["subnet_ids"], name
