"""Unit tests of each chalice.tf.json transformation (infra/stack.py) on small fixtures."""

from __future__ import annotations

import copy
import doctest
import hashlib
import json
import os
import re
import stat
import zipfile
from pathlib import Path

import pytest

from infra import stack
from tests.infra.conftest import INFRA

SWAGGER = {
    "swagger": "2.0",
    "paths": {
        "/health": {
            "get": {"x-amazon-apigateway-integration": {"uri": "${aws_lambda_function.api_handler.invoke_arn}"}}
        },
        "/ingest": {
            "post": {"x-amazon-apigateway-integration": {"uri": "${aws_lambda_function.api_handler.invoke_arn}"}},
            "options": {"x-amazon-apigateway-integration": {"type": "mock"}},
        },
    },
}


def function(name: str, runtime: str = "python3.12", role: str = "lambda", **extra) -> dict:
    return {
        "function_name": f"efs-ml-dev-{name}",
        "runtime": runtime,
        "handler": f"app.{name}",
        "role": f"${{aws_iam_role.{role}.arn}}",
        "filename": "${path.module}/deployment.zip",
        "source_code_hash": '${filebase64sha256("${path.module}/deployment.zip")}',
        "environment": {"variables": {"EFS_ROOT": "/mnt/efs"}},
        **extra,
    }


@pytest.fixture
def template() -> dict:
    """The shape `chalice package --pkg-format terraform` emits for this app, trimmed."""
    return {
        "resource": {
            "aws_lambda_function": {
                "api_handler": function("api_handler", role="api"),
                "on_object_created": function("on_object_created"),
                "reclaim_debris": function("reclaim_debris", role="sweeper"),
            },
            "aws_lambda_permission": {
                "on_object_created-s3event": {
                    "principal": "s3.amazonaws.com",
                    "function_name": "${aws_lambda_function.on_object_created.arn}",
                    "source_account": "${data.aws_caller_identity.chalice.account_id}",
                    "source_arn": "arn:${data.aws_partition.chalice.partition}:s3:::b",
                },
                "reclaim_debris-event": {
                    "principal": "events.amazonaws.com",
                    "function_name": "${aws_lambda_function.reclaim_debris.arn}",
                },
                "rest_api_invoke": {
                    "principal": "apigateway.amazonaws.com",
                    "function_name": "${aws_lambda_function.api_handler.arn}",
                },
            },
            "aws_api_gateway_deployment": {
                "rest_api": {
                    "stage_name": "api",
                    "stage_description": "${md5(local.chalice_api_swagger)}",
                    "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
                    "lifecycle": {"create_before_destroy": True},
                }
            },
            "aws_api_gateway_rest_api": {
                "rest_api": {
                    "name": "efs-ml",
                    "body": "${local.chalice_api_swagger}",
                    "endpoint_configuration": {"types": ["EDGE"]},
                }
            },
            "aws_cloudwatch_event_rule": {
                "reclaim_debris-event": {"name": "reclaim_debris-event", "schedule_expression": "rate(1 hour)"}
            },
            "aws_cloudwatch_event_target": {
                "reclaim_debris-event": {
                    "arn": "${aws_lambda_function.reclaim_debris.arn}",
                    "rule": "${aws_cloudwatch_event_rule.reclaim_debris-event.name}",
                }
            },
            "aws_s3_bucket_notification": {
                "models_notify": {
                    "bucket": "${aws_s3_bucket.models.id}",
                    "lambda_function": [
                        {
                            "events": ["s3:ObjectCreated:*"],
                            "filter_prefix": "models/",
                            "lambda_function_arn": "${aws_lambda_function.on_object_created.arn}",
                        }
                    ],
                }
            },
        },
        "locals": {"chalice_api_swagger": json.dumps(SWAGGER)},
        "output": {
            "EndpointURL": {"value": "${aws_api_gateway_deployment.rest_api.invoke_url}"},
            "RestAPIId": {"value": "${aws_api_gateway_rest_api.rest_api.id}"},
        },
        "terraform": {
            "required_version": ">= 0.12.26, < 1.4.0",
            "required_providers": {"aws": {"version": ">= 3.61.0, < 5"}, "null": {"version": ">= 2, < 4"}},
        },
        "data": {
            "aws_caller_identity": {"chalice": {}},
            "aws_partition": {"chalice": {}},
            "null_data_source": {"chalice": {"inputs": {}}},
        },
    }


def test_merge_patch_merges_deletes_on_none_and_leaves_inputs_alone():
    target = {"a": {"b": 1, "c": 2}, "d": 3}
    before = copy.deepcopy(target)
    assert stack.merge_patch(target, {"a": {"b": None, "e": 4}, "d": None}) == {"a": {"c": 2, "e": 4}}
    assert target == before


def test_docstring_examples_hold():
    assert doctest.testmod(stack).failed == 0


def test_check_runtime_accepts_312_only(template):
    assert stack.check_runtime(template) is template
    template["resource"]["aws_lambda_function"]["on_object_created"]["runtime"] = "python3.11"
    with pytest.raises(stack.StackError, match="on_object_created"):
        stack.check_runtime(template)
    with pytest.raises(stack.StackError, match="no aws_lambda_function"):
        stack.check_runtime({"resource": {}})


def test_drop_null_provider_removes_requirement_and_data_source(template):
    result = stack.drop_null_provider(template)
    assert "null" not in result["terraform"]["required_providers"]
    assert result["data"] == {"aws_caller_identity": {"chalice": {}}, "aws_partition": {"chalice": {}}}
    assert "null_data_source" in json.dumps(template)  # input untouched


def test_replace_version_pins_leaves_versions_tf_as_the_only_pins(template):
    assert "terraform" not in stack.replace_version_pins(template)
    versions = (INFRA / "versions.tf").read_text()
    assert re.search(r'required_version\s*=\s*">= 1\.7\.0"', versions)
    # >= 5.75 (transition_default_minimum_object_size) admits the mirrored
    # 5.100.0 and any later 5.x, never 6.
    assert re.search(r'version\s*=\s*">= 5\.75, < 6\.0"', versions)


def test_drop_chalice_duplicates_uses_the_overlays_data_sources_and_outputs(template):
    result = stack.drop_chalice_duplicates(stack.drop_null_provider(template))
    assert "data" not in result and "output" not in result
    permission = result["resource"]["aws_lambda_permission"]["on_object_created-s3event"]
    assert permission["source_account"] == "${data.aws_caller_identity.current.account_id}"
    assert permission["source_arn"] == "arn:${data.aws_partition.current.partition}:s3:::b"
    assert ".chalice." not in json.dumps(result)
    template["data"]["aws_vpc"] = {"chalice": {}}
    with pytest.raises(stack.StackError, match="aws_vpc"):
        stack.drop_chalice_duplicates(template)


def test_record_function_names_publishes_locals(template):
    result = stack.record_function_names(template)["locals"]
    assert result["chalice_function_names"] == {
        "api_handler": "efs-ml-dev-api_handler",
        "on_object_created": "efs-ml-dev-on_object_created",
        "reclaim_debris": "efs-ml-dev-reclaim_debris",
    }
    assert result["chalice_function_roles"] == {
        "api_handler": "api",
        "on_object_created": "lambda",
        "reclaim_debris": "sweeper",
    }
    assert result["chalice_functions"]["api_handler"] == "${aws_lambda_function.api_handler}"
    template["resource"]["aws_lambda_function"]["api_handler"]["role"] = "${aws_iam_role.default_role.arn}x"
    with pytest.raises(stack.StackError, match="not an overlay role"):
        stack.record_function_names(template)


def test_attach_vpc_and_efs_applies_to_every_function(template):
    template["resource"]["aws_lambda_function"]["later_added"] = function("later_added", depends_on=["x.y"])
    result = stack.attach_vpc_and_efs(template)
    for fn in result["resource"]["aws_lambda_function"].values():
        assert fn["vpc_config"] == {
            "subnet_ids": "${aws_subnet.private[*].id}",
            "security_group_ids": ["${aws_security_group.lambda.id}"],
        }
        assert fn["file_system_config"] == {"arn": "${aws_efs_access_point.lambda.arn}", "local_mount_path": "/mnt/efs"}
        assert fn["replace_security_groups_on_destroy"] is True
        assert fn["replacement_security_group_ids"] == ["${aws_default_security_group.this.id}"]
        assert "aws_efs_mount_target.this" in fn["depends_on"]
        assert set(stack.FUNCTION_DEPENDENCIES) <= set(fn["depends_on"])
    assert result["resource"]["aws_lambda_function"]["later_added"]["depends_on"][0] == "x.y"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"vpc_config": {"subnet_ids": ["s"]}}, "VPC/EFS come from the infra overlay"),
        ({"environment": {"variables": {"EFS_ROOT": "/tmp/efs"}}}, "EFS_ROOT is '/tmp/efs'"),
    ],
)
def test_attach_vpc_and_efs_refuses_conflicting_settings(template, change, message):
    template["resource"]["aws_lambda_function"]["api_handler"].update(change)
    with pytest.raises(stack.StackError, match=message):
        stack.attach_vpc_and_efs(template)


def test_set_reserved_concurrency_reads_the_variable(template):
    result = stack.set_reserved_concurrency(template)
    fn = result["resource"]["aws_lambda_function"]["on_object_created"]
    assert fn["reserved_concurrent_executions"] == '${lookup(var.reserved_concurrency, "on_object_created", -1)}'


def test_deploy_from_s3_object_uploads_once_for_every_function(template):
    result = stack.deploy_from_s3_object(template)
    for fn in result["resource"]["aws_lambda_function"].values():
        assert "filename" not in fn
        assert (fn["s3_bucket"], fn["s3_key"], fn["s3_object_version"]) == (
            "${aws_s3_object.deployment.bucket}",
            "${aws_s3_object.deployment.key}",
            "${aws_s3_object.deployment.version_id}",
        )
        assert fn["source_code_hash"] == '${filebase64sha256("${path.module}/deployment.zip")}'
    template["resource"]["aws_lambda_function"]["api_handler"]["image_uri"] = "x"
    with pytest.raises(stack.StackError, match="api_handler"):
        stack.deploy_from_s3_object(template)


def test_set_metrics_namespace_for_every_function(template):
    result = stack.set_metrics_namespace(template)
    for fn in result["resource"]["aws_lambda_function"].values():
        assert fn["environment"]["variables"] == {
            "EFS_ROOT": "/mnt/efs",
            "METRICS_NAMESPACE": "${local.metrics_namespace}",
        }


def test_catch_failed_s3_events_sends_them_to_the_queue(template):
    result = stack.catch_failed_s3_events(template)
    configs = result["resource"]["aws_lambda_function_event_invoke_config"]
    assert configs == {
        "on_object_created": {
            "function_name": "${aws_lambda_function.on_object_created.function_name}",
            "qualifier": "live",
            "maximum_retry_attempts": "${var.s3_event_max_retries}",
            "maximum_event_age_in_seconds": "${var.s3_event_max_age_seconds}",
            "destination_config": {"on_failure": {"destination": "${aws_sqs_queue.failed_events.arn}"}},
            "depends_on": ["aws_lambda_alias.on_object_created", "aws_iam_role_policy.lambda"],
        }
    }
    assert result["locals"]["s3_event_functions"] == ["on_object_created"]
    del template["resource"]["aws_s3_bucket_notification"]
    assert "aws_lambda_function_event_invoke_config" not in stack.catch_failed_s3_events(template)["resource"]


def test_wire_bucket_notifications_depends_on_the_s3_permission_only(template):
    result = stack.wire_bucket_notifications(template)
    notification = result["resource"]["aws_s3_bucket_notification"]["models_notify"]
    assert notification["depends_on"] == ["aws_lambda_permission.on_object_created-s3event"]


def test_wire_bucket_notifications_refuses_a_foreign_bucket_or_missing_permission(template):
    broken = copy.deepcopy(template)
    broken["resource"]["aws_s3_bucket_notification"]["models_notify"]["bucket"] = "efs-ml-local"
    with pytest.raises(stack.StackError, match="efs-ml-local"):
        stack.wire_bucket_notifications(broken)
    del template["resource"]["aws_lambda_permission"]["on_object_created-s3event"]
    with pytest.raises(stack.StackError, match="no aws_lambda_permission"):
        stack.wire_bucket_notifications(template)


def test_add_notification_prefixes_adds_inputs_once(template):
    once = stack.add_notification_prefixes(template)
    twice = stack.add_notification_prefixes(once)
    subscriptions = twice["resource"]["aws_s3_bucket_notification"]["models_notify"]["lambda_function"]
    assert [(s["filter_prefix"], s["lambda_function_arn"]) for s in subscriptions] == [
        ("models/", "${aws_lambda_function.on_object_created.arn}"),
        ("inputs/", "${aws_lambda_function.on_object_created.arn}"),
    ]
    assert subscriptions[1]["events"] == ["s3:ObjectCreated:*"]


def test_require_api_key_covers_every_operation_but_preflight(template):
    swagger = json.loads(stack.require_api_key(template)["locals"]["chalice_api_swagger"])
    assert swagger["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert swagger["x-amazon-apigateway-api-key-source"] == "HEADER"
    assert swagger["paths"]["/health"]["get"]["security"] == [{"api_key": []}]
    assert swagger["paths"]["/ingest"]["post"]["security"] == [{"api_key": []}]
    assert "security" not in swagger["paths"]["/ingest"]["options"]


def test_split_api_stage_moves_the_stage_out_of_the_deployment(template):
    result = stack.split_api_stage(template)
    deployment = result["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert "stage_name" not in deployment and "stage_description" not in deployment
    assert deployment["triggers"] == {"redeployment": "${md5(local.chalice_api_swagger)}"}
    assert deployment["lifecycle"] == {"create_before_destroy": True}
    assert result["resource"]["aws_api_gateway_stage"]["rest_api"] == {
        "rest_api_id": "${aws_api_gateway_rest_api.rest_api.id}",
        "deployment_id": "${aws_api_gateway_deployment.rest_api.id}",
        "stage_name": "api",
    }
    assert result["output"]["EndpointURL"] == {"value": "${aws_api_gateway_stage.rest_api.invoke_url}"}
    assert result["output"]["RestAPIId"] == template["output"]["RestAPIId"]


def test_log_api_access_sends_one_json_line_per_request_to_the_overlay_group(template):
    result = stack.log_api_access(stack.split_api_stage(template))
    stage = result["resource"]["aws_api_gateway_stage"]["rest_api"]
    settings = stage["access_log_settings"]
    assert settings["destination_arn"] == "${aws_cloudwatch_log_group.api_access.arn}"
    fields = json.loads(settings["format"])  # API Gateway substitutes inside a JSON document
    assert {"requestId", "sourceIp", "apiKeyId", "userArn", "httpMethod", "path", "status"} <= set(fields)
    assert all(v.startswith("$context.") for v in fields.values())
    assert "${" not in settings["format"]  # nothing Terraform would interpolate
    assert stage["depends_on"] == ["aws_api_gateway_account.this"]
    with pytest.raises(stack.StackError, match="already has access_log_settings"):
        stack.log_api_access(result)
    no_api = {"resource": {"aws_lambda_function": {}}}
    assert stack.log_api_access(no_api) == no_api


def test_offer_iam_auth_adds_a_sigv4_body_chosen_by_a_variable(template):
    keyed = stack.split_api_stage(stack.require_api_key(template))
    result = stack.offer_iam_auth(keyed)
    locals_ = result["locals"]
    assert locals_["chalice_api_swagger"] == keyed["locals"]["chalice_api_swagger"]  # the default is untouched
    assert locals_["api_body"] == '${var.api_auth == "iam" ? local.chalice_api_swagger_iam : local.chalice_api_swagger}'
    assert result["resource"]["aws_api_gateway_rest_api"]["rest_api"]["body"] == "${local.api_body}"
    deployment = result["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert deployment["triggers"] == {"redeployment": "${md5(local.api_body)}"}
    iam = json.loads(locals_["chalice_api_swagger_iam"])
    # What Chalice writes for authorizer=IAMAuthorizer(): API Gateway's AWS_IAM authorization type.
    assert iam["securityDefinitions"] == {
        "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}
    }
    assert "x-amazon-apigateway-api-key-source" not in iam
    assert iam["paths"]["/health"]["get"]["security"] == [{"sigv4": []}]
    assert iam["paths"]["/ingest"]["post"]["security"] == [{"sigv4": []}]
    assert "security" not in iam["paths"]["/ingest"]["options"]  # CORS preflights carry no signature
    assert (
        iam["paths"]["/ingest"]["post"]["x-amazon-apigateway-integration"]
        == json.loads(keyed["locals"]["chalice_api_swagger"])["paths"]["/ingest"]["post"][
            "x-amazon-apigateway-integration"
        ]
    )


def _redeploy_hash(template: dict) -> str:
    """What the redeployment trigger ``md5(local.chalice_api_swagger)`` evaluates to."""
    return hashlib.md5(template["locals"]["chalice_api_swagger"].encode()).hexdigest()


def test_gateway_responses_are_in_the_api_body_and_drive_redeploys(template, monkeypatch):
    result = stack.split_api_stage(stack.add_gateway_responses(template))
    swagger = json.loads(result["locals"]["chalice_api_swagger"])
    responses = swagger["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    assert '"requestId":"$context.requestId"' in responses["DEFAULT_4XX"]["responseTemplates"]["application/json"]
    deployment = result["resource"]["aws_api_gateway_deployment"]["rest_api"]
    assert deployment["triggers"] == {"redeployment": "${md5(local.chalice_api_swagger)}"}
    assert "depends_on" not in deployment  # no separate gateway-response resources any more
    # A changed gateway response changes the body, hence its hash, hence a redeploy.
    before = _redeploy_hash(result)
    monkeypatch.setitem(stack.GATEWAY_RESPONSES, "DEFAULT_4XX", '{"error":"CHANGED"}')
    after = _redeploy_hash(stack.split_api_stage(stack.add_gateway_responses(template)))
    assert before != after
    no_api = {"resource": {"aws_lambda_function": {}}}
    assert stack.add_gateway_responses(no_api) == no_api


def test_configure_rest_api_names_it_per_environment_and_takes_the_endpoint_type(template):
    api = stack.configure_rest_api(template)["resource"]["aws_api_gateway_rest_api"]["rest_api"]
    assert api["name"] == "${local.name}"
    assert api["endpoint_configuration"] == {"types": ["${var.api_endpoint_type}"]}
    assert api["body"] == "${local.chalice_api_swagger}"


def test_name_schedules_prefixes_rule_names(template):
    rule = stack.name_schedules(template)["resource"]["aws_cloudwatch_event_rule"]["reclaim_debris-event"]
    assert rule["name"] == "${local.name}-reclaim_debris-event"


def test_route_through_alias_targets_the_live_alias_everywhere(template):
    result = stack.route_through_alias(template)
    res = result["resource"]
    assert set(res["aws_lambda_alias"]) == {"api_handler", "on_object_created", "reclaim_debris"}
    assert res["aws_lambda_alias"]["api_handler"]["function_version"] == "${aws_lambda_function.api_handler.version}"
    assert (
        res["aws_lambda_function"]["api_handler"]["publish"]
        == '${contains(keys(var.provisioned_concurrency), "api_handler")}'
    )
    assert (
        res["aws_lambda_provisioned_concurrency_config"]["api_handler"]["count"]
        == '${contains(keys(var.provisioned_concurrency), "api_handler") ? 1 : 0}'
    )
    assert {p["qualifier"] for p in res["aws_lambda_permission"].values()} == {"live"}
    assert (
        res["aws_s3_bucket_notification"]["models_notify"]["lambda_function"][0]["lambda_function_arn"]
        == "${aws_lambda_alias.on_object_created.arn}"
    )
    # EventBridge must invoke the alias too: the permission allows only it.
    assert res["aws_cloudwatch_event_target"]["reclaim_debris-event"]["arn"] == "${aws_lambda_alias.reclaim_debris.arn}"
    swagger = result["locals"]["chalice_api_swagger"]
    assert "aws_lambda_function" not in swagger and "${aws_lambda_alias.api_handler.invoke_arn}" in swagger


def test_add_function_outputs_lists_every_function(template):
    value = stack.add_function_outputs(template)["output"]["function_arns"]["value"]
    assert value == {
        "api_handler": "${aws_lambda_function.api_handler.arn}",
        "on_object_created": "${aws_lambda_function.on_object_created.arn}",
        "reclaim_debris": "${aws_lambda_function.reclaim_debris.arn}",
    }


def test_transform_runs_every_step_in_order(template):
    result = stack.transform(template)
    assert "terraform" not in result and "null_data_source" not in json.dumps(result)
    notification = result["resource"]["aws_s3_bucket_notification"]["models_notify"]
    assert notification["depends_on"] == ["aws_lambda_permission.on_object_created-s3event"]
    assert [s["lambda_function_arn"] for s in notification["lambda_function"]] == [
        "${aws_lambda_alias.on_object_created.arn}"
    ] * 2


def test_run_chalice_package_fails_on_the_dependency_warning(tmp_path):
    fake = tmp_path / "chalice"
    fake.write_text("#!/bin/sh\necho 'Could not install dependencies:\nnumpy==2.5.5'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(stack.StackError, match="could not bundle dependencies"):
        stack.run_chalice_package(tmp_path, "dev", tmp_path / "out", str(fake))


def test_assemble_stack_refuses_a_package_lambda_cannot_unzip(tmp_path):
    chalice_dir = tmp_path / "chalice"
    chalice_dir.mkdir()
    with zipfile.ZipFile(chalice_dir / "deployment.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", b"0" * 4096)  # compresses to a few bytes
    (chalice_dir / "chalice.tf.json").write_text("{}")
    assert stack.unzipped_size(chalice_dir / "deployment.zip") == 4096
    with pytest.raises(stack.StackError, match="unzips to"):
        stack.assemble_stack(chalice_dir, INFRA, tmp_path / "stack", max_unzipped=4096)
    assert stack.MAX_UNZIPPED_BYTES == 250 * 2**20  # Lambda documents 262,144,000 bytes


def test_main_refuses_the_local_stage(capsys):
    assert stack.main(["--stage", "local", "--build-dir", os.devnull]) == 1
    assert "chalice local" in capsys.readouterr().err


def test_packaging_the_app_is_clean_and_small(chalice_output, packaged_stack):
    """The real app: no dependency warning, zip under 50 MiB, every function wired."""
    _, printed = chalice_output
    assert stack.DEPENDENCY_WARNING not in printed
    assert stack.unzipped_size(packaged_stack / "deployment.zip") < stack.MAX_UNZIPPED_BYTES
    template = json.loads((packaged_stack / "chalice.tf.json").read_text())
    assert "null" not in json.dumps(template.get("terraform", {})) and "null_data_source" not in json.dumps(template)
    functions = template["resource"]["aws_lambda_function"]
    assert {"api_handler", "on_object_created", "reclaim_debris"} <= set(functions)
    for fn in functions.values():
        assert fn["runtime"] == "python3.12"
        assert fn["file_system_config"]["local_mount_path"] == "/mnt/efs"
        assert fn["s3_key"] == "${aws_s3_object.deployment.key}" and "filename" not in fn
    # api_handler ends before API Gateway (29 s); the code's deadline is Lambda's remaining time.
    assert functions["api_handler"]["timeout"] <= 29
    assert functions["on_object_created"]["timeout"] == 900
    assert (functions["reclaim_debris"]["timeout"], functions["reclaim_debris"]["memory_size"]) == (300, 512)
    assert functions["reclaim_debris"]["role"] == "${aws_iam_role.sweeper.arn}"
    assert {p.name for p in Path(packaged_stack).glob("*.tf")} == {p.name for p in INFRA.glob("*.tf")}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_packaged_stages_keep_timeouts_consistent_with_the_gateway(stage):
    """Every packaged stage (tests package dev only): api_handler ends before API Gateway's
    29 s, the S3 handler has 900 s for a 1 GiB copy, the sweep runs as the sweeper role."""
    config = json.loads((INFRA.parent / ".chalice" / "config.json").read_text())
    stage_config = config["stages"][stage]
    functions = stage_config["lambda_functions"]

    def effective(name: str, key: str):
        return functions.get(name, {}).get(key, stage_config.get(key, config.get(key)))

    assert effective("api_handler", "lambda_timeout") <= 29
    assert effective("on_object_created", "lambda_timeout") == 900
    assert effective("reclaim_debris", "lambda_timeout") == 300
    assert effective("reclaim_debris", "iam_role_arn") == "${aws_iam_role.sweeper.arn}"
    assert effective("api_handler", "iam_role_arn") == "${aws_iam_role.api.arn}"
    assert stage_config["manage_iam_role"] is False


def test_assemble_stack_keeps_the_deployers_files(chalice_output, tmp_path):
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    kept = ["terraform.tfstate", "terraform.tfstate.backup", "terraform.tfvars", "backend.tf", "x.auto.tfvars"]
    for name in kept + ["stale.tf"]:
        (stack_dir / name).write_text("# mine\n")
    stack.assemble_stack(chalice_output[0], INFRA, stack_dir)
    assert all((stack_dir / name).read_text() == "# mine\n" for name in kept)
    assert not (stack_dir / "stale.tf").exists()
    assert (stack_dir / "chalice.tf.json").exists() and (stack_dir / "tests" / "stack.tftest.hcl").exists()


def with_job_mapping(template: dict, queue: str = "efs-ml-jobs") -> dict:
    """The template plus what Chalice emits for ``@app.on_sqs_message(queue=...)`` (run_job_blocks)."""
    result = copy.deepcopy(template)
    result["resource"]["aws_lambda_function"]["run_job_blocks"] = function("run_job_blocks", role="jobs")
    result["resource"]["aws_lambda_event_source_mapping"] = {
        "run_job_blocks-sqs-event-source": {
            "event_source_arn": "arn:${data.aws_partition.chalice.partition}:sqs:${data.aws_region.chalice.name}"
            f":${{data.aws_caller_identity.chalice.account_id}}:{queue}",
            "batch_size": 1,
            "maximum_batching_window_in_seconds": 0,
            "function_name": "${aws_lambda_function.run_job_blocks.arn}",
        }
    }
    return result


def test_wire_job_queue_bounds_the_mapping_and_reports_partial_failures(template):
    before = with_job_mapping(template)
    mapping = stack.wire_job_queue(before)["resource"]["aws_lambda_event_source_mapping"][
        "run_job_blocks-sqs-event-source"
    ]
    assert mapping["event_source_arn"] == "${aws_sqs_queue.jobs.arn}"
    assert mapping["function_name"] == "${aws_lambda_function.run_job_blocks.arn}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["scaling_config"] == {"maximum_concurrency": "${var.job_max_concurrency}"}
    assert mapping["depends_on"] == ["aws_iam_role_policy.jobs"]
    assert before["resource"]["aws_lambda_event_source_mapping"]["run_job_blocks-sqs-event-source"]["batch_size"] == 1
    assert stack.wire_job_queue(template) == template  # no mapping: nothing to do
    # Through the whole pipeline the mapping keeps its settings, and the function its VPC and role.
    full = stack.transform(with_job_mapping(template))
    assert full["resource"]["aws_lambda_event_source_mapping"]["run_job_blocks-sqs-event-source"]["scaling_config"]
    assert full["locals"]["chalice_function_roles"]["run_job_blocks"] == "jobs"


def test_wire_job_queue_maps_the_dead_letters_to_their_recorder_at_the_least_concurrency(template):
    before = with_job_mapping(template)
    dead = copy.deepcopy(before["resource"]["aws_lambda_event_source_mapping"]["run_job_blocks-sqs-event-source"])
    dead["event_source_arn"] += "-dlq"
    dead["function_name"] = "${aws_lambda_function.fail_dead_blocks.arn}"
    before["resource"]["aws_lambda_event_source_mapping"]["fail_dead_blocks-sqs-event-source"] = dead
    before["resource"]["aws_lambda_function"]["fail_dead_blocks"] = function(
        "fail_dead_blocks", role="job_dead_letters"
    )
    mappings = stack.wire_job_queue(before)["resource"]["aws_lambda_event_source_mapping"]
    mapping = mappings["fail_dead_blocks-sqs-event-source"]
    assert mapping["event_source_arn"] == "${aws_sqs_queue.jobs_dlq.arn}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["scaling_config"] == {"maximum_concurrency": 2}  # Lambda's least
    assert mapping["depends_on"] == ["aws_iam_role_policy.job_dead_letters"]
    assert mappings["run_job_blocks-sqs-event-source"]["event_source_arn"] == "${aws_sqs_queue.jobs.arn}"


def test_wire_job_queue_refuses_a_queue_the_overlay_does_not_have(template):
    with pytest.raises(stack.StackError, match="efs-ml-jobs"):
        stack.wire_job_queue(with_job_mapping(template, queue="someone-elses"))


def test_packaged_stages_run_job_workers_as_the_jobs_role_for_900_s():
    config = json.loads((INFRA.parent / ".chalice" / "config.json").read_text())
    for stage in ("dev", "prod"):
        stage_config = config["stages"][stage]
        worker = stage_config["lambda_functions"]["run_job_blocks"]
        assert worker["iam_role_arn"] == "${aws_iam_role.jobs.arn}" and worker["lambda_timeout"] == 900
        env = stage_config["environment_variables"]
        assert env["JOB_QUEUE_URL"] == "${aws_sqs_queue.jobs.url}"
        assert env["JOB_MAX_RECEIVE_COUNT"] == "${var.job_max_receive_count}"
    # The queue's visibility timeout is six times the worker's timeout (infra/jobs.tf).
    jobs_tf = (INFRA / "jobs.tf").read_text()
    assert re.search(r"job_worker_timeout_seconds\s+= 900\b", jobs_tf)
    # Lambda refuses a mapping on a queue whose visibility timeout is shorter than the function's.
    recorder = config["stages"]["dev"]["lambda_functions"]["fail_dead_blocks"]
    assert recorder["iam_role_arn"] == "${aws_iam_role.job_dead_letters.arn}"
    assert re.search(rf"dead_letter_timeout_seconds\s+= {recorder['lambda_timeout']}\b", jobs_tf)
    assert "visibility_timeout_seconds = 6 * local.dead_letter_timeout_seconds" in jobs_tf
