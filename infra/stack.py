"""Turn `chalice package --pkg-format terraform` output into a deployable stack.

Build-time code only: the Lambda package never imports it.

Chalice's Terraform generator cannot be configured far enough (it refuses
``--merge-template`` for Terraform, pins Terraform < 1.4 and AWS < 5, needs
the ``null`` provider, and knows nothing of EFS), and Terraform override files
cannot remove a provider or add ``depends_on``.  So, as DataBiosphere/azul
does, ``chalice.tf.json`` is post-processed by small, named transformations,
each a pure function ``template -> template`` covered by a unit test.  The
result, plus the overlay in ``infra/*.tf`` and ``deployment.zip``, is written
to one directory that ``terraform init && terraform apply`` deploys as is.

Usage::

    python -m infra.stack --app-dir . --stage dev --build-dir build   # -> build/stacks/dev
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, overload

Template = dict[str, Any]

RUNTIME = "python3.12"
MOUNT_PATH = "/mnt/efs"
ALIAS_NAME = "live"
# Lambda's limit on a package unzipped (code and layers); from S3 the zip
# itself is not limited further.
MAX_UNZIPPED_BYTES = 262_144_000
# Printed by Chalice when a dependency has no wheel for Lambda's platform; the
# package would then miss it and fail at import time in Lambda.
DEPENDENCY_WARNING = "Could not install dependencies"

# Overlay resources (infra/*.tf) the transformations wire functions to.
BUCKET_REF = "${aws_s3_bucket.models.id}"
ACCESS_POINT_ARN = "${aws_efs_access_point.lambda.arn}"
SUBNET_IDS = "${aws_subnet.private[*].id}"
LAMBDA_SECURITY_GROUP = "${aws_security_group.lambda.id}"
DEFAULT_SECURITY_GROUP = "${aws_default_security_group.this.id}"  # stripped of all rules
FUNCTION_DEPENDENCIES = (
    "aws_efs_mount_target.this",  # Lambda refuses an access point without a mount target
    "aws_cloudwatch_log_group.lambda",  # else Lambda creates it without retention
    # The roles must allow EFS before the first mount, and CreateFunction
    # checks the ENI rights of the role (inline policies, infra/iam.tf).
    "aws_iam_role_policy.lambda",
    "aws_iam_role_policy.api",
    "aws_iam_role_policy.sweeper",
    "aws_iam_role_policy.jobs",  # run_job_blocks (infra/jobs.tf)
    "aws_iam_role_policy.job_dead_letters",  # fail_dead_blocks (infra/jobs.tf)
    "aws_iam_role_policy.api_jobs",
)
# The deployment package, uploaded once by the overlay (infra/artifacts.tf).
PACKAGE_OBJECT = "aws_s3_object.deployment"
PACKAGE_HASH = '${filebase64sha256("${path.module}/deployment.zip")}'
# Where a failed S3 event goes (infra/monitoring.tf), and how hard Lambda tries first.
FAILED_EVENTS_QUEUE_ARN = "${aws_sqs_queue.failed_events.arn}"
# The batch jobs' queue (infra/jobs.tf), which `@app.on_sqs_message` names
# by its local name only, and the settings of its event source mapping.
JOB_QUEUE_NAME = "efs-ml-jobs"
JOB_QUEUE_ARN = "${aws_sqs_queue.jobs.arn}"
JOB_MAX_CONCURRENCY = "${var.job_max_concurrency}"
# Its dead letters (fail_dead_blocks records them on the jobs): few, so the
# smallest maximum concurrency Lambda allows.
JOB_DLQ_NAME = "efs-ml-jobs-dlq"
JOB_DLQ_ARN = "${aws_sqs_queue.jobs_dlq.arn}"
JOB_DLQ_MAX_CONCURRENCY = 2
# Set in every function's environment: one namespace per environment, so
# dev and prod metrics (same Service/Operation dimensions) never mix.
METRICS_NAMESPACE = "${local.metrics_namespace}"
# API Gateway's own errors (a missing or wrong API key, an unknown route,
# throttling, an integration failure) in the service's documented error
# shape rather than {"message": ...}. $context.error.messageString is
# already a quoted JSON string.
GATEWAY_RESPONSES = {
    "DEFAULT_4XX": '{"error":"INVALID_REQUEST","message":$context.error.messageString,'
    '"requestId":"$context.requestId"}',
    "DEFAULT_5XX": '{"error":"PROCESSING_FAILED","message":$context.error.messageString,'
    '"requestId":"$context.requestId"}',
}
# Data sources infra/versions.tf declares as `.current`, and Chalice's
# outputs that infra/outputs.tf replaces.
OVERLAY_DATA_SOURCES = frozenset({"aws_caller_identity", "aws_partition", "aws_region"})
CHALICE_OUTPUTS = ("EndpointURL", "RestAPIId")
_ROLE_REF = re.compile(r"^\$\{aws_iam_role\.([A-Za-z0-9_-]+)\.arn\}$")
# Keys that `@app.on_s3_event(prefix='models/')` subscribes to, and the
# prefixes the same handler also serves (it ingests inputs/ too).
EXTRA_NOTIFICATION_PREFIXES = {"models/": ("inputs/",)}
SWAGGER_OPERATIONS = frozenset(
    {"get", "put", "post", "delete", "patch", "head", "x-amazon-apigateway-any-method"}
)  # not "options": CORS preflights carry no API key
API_KEY_SCHEME = {"type": "apiKey", "name": "x-api-key", "in": "header"}
# Chalice's IAMAuthorizer: SigV4-signed requests, checked by API Gateway
# against the caller's execute-api:Invoke permission (AWS_IAM on each method).
SIGV4_SCHEME = {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}
# The REST API's body: the API-key or the SigV4 document, by var.api_auth.
API_BODY = '${var.api_auth == "iam" ? local.chalice_api_swagger_iam : local.chalice_api_swagger}'
# The API stage's access log (infra/logs.tf): one JSON line per request,
# enough to say who (API key id, or the IAM caller under SigV4) did what
# (method and path, the model name included) with which answer.
ACCESS_LOG_GROUP_ARN = "${aws_cloudwatch_log_group.api_access.arn}"
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "apiKeyId": "$context.identity.apiKeyId",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
    "error": "$context.error.message",
}

# One stack directory per stage, <build>/stacks/<stage>: each holds its own
# Terraform state and tfvars, so packaging or applying one stage never
# touches another's. Before per-stage folders every stage was packaged into
# <build>/stack; migrate_legacy_stack moves such a stack to its own folder.
STACKS_DIR = "stacks"
LEGACY_STACK_DIR = "stack"
# Written on every packaging (not a user file): the environment is the stage.
# *.auto.tfvars.json files take precedence over terraform.tfvars.
STAGE_VARS_FILE = "stage.auto.tfvars.json"
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")  # var.environment's validation
_ENVIRONMENT_SETTING = re.compile(r'^\s*environment\s*=\s*"([^"]*)"', re.M)

# Files of the person deploying that re-packaging must not delete.
USER_FILES = (
    ".terraform",
    ".terraform.lock.hcl",
    "terraform.tfstate*",
    "terraform.tfvars",
    "*.auto.tfvars",
    "backend.tf",
    "outputs.json",
)

_FUNCTION_REF = re.compile(r"\$\{aws_lambda_function\.([A-Za-z0-9_-]+)\.(arn|invoke_arn)\}")


class StackError(Exception):
    """The Chalice output cannot be turned into the stack we promise."""


@overload
def merge_patch(target: Any, patch: dict[str, Any]) -> dict[str, Any]: ...
@overload
def merge_patch(target: Any, patch: Any) -> Any: ...


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: dicts merge, ``None`` deletes a key.

    Chalice's ``TemplateDeepMerger`` merges the same way but keeps ``None`` as
    a JSON ``null``, which Terraform rejects where a block is expected; hence
    this variant.  Returns a new object; the arguments are not modified.

    >>> merge_patch({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None, "e": 4}, "d": None})
    {'a': {'c': 2, 'e': 4}}
    >>> merge_patch({"a": [1, 2]}, {"a": [3]})  # lists are replaced, not merged
    {'a': [3]}
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    functions: dict[str, dict[str, Any]] = template.get("resource", {}).get("aws_lambda_function", {})
    return functions


def _add_depends_on(block: dict[str, Any], addresses: Iterable[str]) -> None:
    existing = block.setdefault("depends_on", [])
    existing.extend(a for a in addresses if a not in existing)


def _role(template: Template, name: str) -> str:
    """The overlay role (``aws_iam_role.<role>``) function ``name`` runs as."""
    role = _functions(template)[name].get("role", "")
    match = _ROLE_REF.match(role)
    if not match:
        raise StackError(
            f"{name}: role {role!r} is not an overlay role "
            "(set manage_iam_role false and iam_role_arn in .chalice/config.json)"
        )
    return match.group(1)


def check_runtime(template: Template) -> Template:
    """Fail unless every function runs on python3.12.

    Chalice takes the runtime from the interpreter that packages the app, and
    only 3.12 bundles the manylinux_2_28 wheels (numpy, onnxruntime) we need.
    """
    functions = _functions(template)
    if not functions:
        raise StackError("chalice.tf.json has no aws_lambda_function")
    wrong = {name: f.get("runtime") for name, f in functions.items() if f.get("runtime") != RUNTIME}
    if wrong:
        raise StackError(f"functions must run on {RUNTIME}, package with Python 3.12: {wrong}")
    return template


def drop_null_provider(template: Template) -> Template:
    """Remove the ``null`` provider requirement and Chalice's unused ``null_data_source``."""
    result = merge_patch(
        template,
        {"terraform": {"required_providers": {"null": None}}, "data": {"null_data_source": None}},
    )
    if "null_data_source" in json.dumps(result):
        raise StackError("something still references null_data_source")
    return result


def replace_version_pins(template: Template) -> Template:
    """Drop Chalice's ``terraform`` block (Terraform < 1.4, AWS < 5).

    infra/versions.tf then holds the only ``required_version`` and
    ``required_providers``; two declarations of one provider would clash.
    """
    return merge_patch(template, {"terraform": None})


def drop_chalice_duplicates(template: Template) -> Template:
    """Use the overlay's data sources and outputs instead of Chalice's copies.

    Chalice declares its own ``aws_caller_identity``, ``aws_partition`` and
    ``aws_region`` and outputs ``EndpointURL``/``RestAPIId``, which
    infra/versions.tf (``.current``) and infra/outputs.tf (``api_url``,
    ``rest_api_id``) already provide.
    """
    data = template.get("data", {})
    unknown = sorted(set(data) - OVERLAY_DATA_SOURCES)
    if unknown:
        raise StackError(f"chalice.tf.json reads data sources the overlay lacks: {unknown}")
    text = json.dumps({k: v for k, v in template.items() if k != "data"})
    for kind, blocks in data.items():
        for name in blocks:
            text = text.replace(f"${{data.{kind}.{name}.", f"${{data.{kind}.current.")
    result: Template = json.loads(text)
    for name in CHALICE_OUTPUTS:
        result.get("output", {}).pop(name, None)
    if "output" in result and not result["output"]:
        del result["output"]
    return result


def record_function_names(template: Template) -> Template:
    """Publish the functions to the overlay and the tests as locals.

    ``local.chalice_function_names`` (Chalice name -> Lambda name) drives one
    log group and the alarms per function; ``local.chalice_function_roles``
    (Chalice name -> overlay role) lets each role write only its own
    functions' logs; ``local.chalice_functions`` (Chalice name -> resource)
    lets infra/tests assert on every function, however many.
    """
    functions = _functions(template)
    names = {name: f["function_name"] for name, f in sorted(functions.items())}
    roles = {name: _role(template, name) for name in sorted(functions)}
    objects = {name: f"${{aws_lambda_function.{name}}}" for name in sorted(functions)}
    patch: Template = {
        "locals": {"chalice_function_names": names, "chalice_function_roles": roles, "chalice_functions": objects}
    }
    return merge_patch(template, patch)


def attach_vpc_and_efs(template: Template) -> Template:
    """Put every function in the private subnets and mount the access point at /mnt/efs.

    Each function also waits for the mount targets, its log group and its
    role's policies, which Terraform cannot infer from references alone. On
    destroy, its ENIs are first moved to the rule-less default security group,
    so the Lambda group can go while AWS still holds the ENIs.
    """
    result = copy.deepcopy(template)
    for name, function in _functions(result).items():
        if "vpc_config" in function or "file_system_config" in function:
            raise StackError(
                f"{name}: VPC/EFS come from the infra overlay; remove subnet_ids/"
                "security_group_ids from .chalice/config.json"
            )
        efs_root = function.get("environment", {}).get("variables", {}).get("EFS_ROOT", MOUNT_PATH)
        if efs_root != MOUNT_PATH:
            raise StackError(f"{name}: EFS_ROOT is {efs_root!r}, the access point is mounted at {MOUNT_PATH}")
        function["vpc_config"] = {"subnet_ids": SUBNET_IDS, "security_group_ids": [LAMBDA_SECURITY_GROUP]}
        function["file_system_config"] = {"arn": ACCESS_POINT_ARN, "local_mount_path": MOUNT_PATH}
        function["replace_security_groups_on_destroy"] = True
        function["replacement_security_group_ids"] = [DEFAULT_SECURITY_GROUP]
        _add_depends_on(function, FUNCTION_DEPENDENCIES)
    return result


def set_reserved_concurrency(template: Template) -> Template:
    """Read each function's reserved concurrency from ``var.reserved_concurrency`` (-1: unreserved)."""
    result = copy.deepcopy(template)
    for name, function in _functions(result).items():
        if "reserved_concurrent_executions" in function:
            raise StackError(f"{name}: set reserved concurrency through var.reserved_concurrency")
        function["reserved_concurrent_executions"] = f'${{lookup(var.reserved_concurrency, "{name}", -1)}}'
    return result


def deploy_from_s3_object(template: Template) -> Template:
    """Every function takes its code from the one uploaded ``aws_s3_object.deployment``.

    A direct upload sends the zip once per function and is capped at 50 MB;
    from S3 it is uploaded once and only the 250 MB unzipped limit applies.
    ``source_code_hash`` (the local zip's SHA-256, as Lambda reports it)
    redeploys the code when the package changes.
    """
    result = copy.deepcopy(template)
    for name, function in _functions(result).items():
        if "s3_bucket" in function or "image_uri" in function:
            raise StackError(f"{name}: expected a zip package from chalice, found another source")
        function.pop("filename", None)
        function["s3_bucket"] = f"${{{PACKAGE_OBJECT}.bucket}}"
        function["s3_key"] = f"${{{PACKAGE_OBJECT}.key}}"
        function["s3_object_version"] = f"${{{PACKAGE_OBJECT}.version_id}}"
        function["source_code_hash"] = PACKAGE_HASH
    return result


def set_metrics_namespace(template: Template) -> Template:
    """Give every function ``METRICS_NAMESPACE`` = ``local.metrics_namespace``, which the dashboard reads."""
    result = copy.deepcopy(template)
    for function in _functions(result).values():
        function.setdefault("environment", {}).setdefault("variables", {})["METRICS_NAMESPACE"] = METRICS_NAMESPACE
    return result


def wire_bucket_notifications(template: Template) -> Template:
    """Point notifications at the overlay's bucket and order them after their permissions.

    S3 validates the destination when the notification is written, so the
    ``aws_lambda_permission`` that lets S3 invoke the function must exist first.
    """
    result = copy.deepcopy(template)
    resources = result.get("resource", {})
    permissions = resources.get("aws_lambda_permission", {})
    for name, notification in resources.get("aws_s3_bucket_notification", {}).items():
        if notification.get("bucket") != BUCKET_REF:
            raise StackError(
                f"{name}: notification on bucket {notification.get('bucket')!r}; the overlay provides "
                f"{BUCKET_REF} (set MODEL_BUCKET to it in .chalice/config.json)"
            )
        targets = {
            m.group(1)
            for t in notification.get("lambda_function", [])
            for m in _FUNCTION_REF.finditer(t.get("lambda_function_arn", ""))
        }
        needed = sorted(
            f"aws_lambda_permission.{perm_name}"
            for perm_name, perm in permissions.items()
            if perm.get("principal", "").startswith("s3.")
            and {m.group(1) for m in _FUNCTION_REF.finditer(perm.get("function_name", ""))} & targets
        )
        if not needed:
            raise StackError(f"{name}: no aws_lambda_permission lets S3 invoke {sorted(targets)}")
        _add_depends_on(notification, needed)
    return result


def add_notification_prefixes(template: Template) -> Template:
    """Subscribe the handler of ``models/`` keys to ``inputs/`` keys as well.

    Chalice allows one prefix per ``@app.on_s3_event``; the handler serves
    both, and two decorators on one bucket would need two handlers.
    """
    result = copy.deepcopy(template)
    for notification in result.get("resource", {}).get("aws_s3_bucket_notification", {}).values():
        subscriptions = notification.get("lambda_function", [])
        present = {(s["lambda_function_arn"], s.get("filter_prefix")) for s in subscriptions}
        for subscription in list(subscriptions):
            for prefix in EXTRA_NOTIFICATION_PREFIXES.get(subscription.get("filter_prefix"), ()):
                if (subscription["lambda_function_arn"], prefix) not in present:
                    subscriptions.append({**copy.deepcopy(subscription), "filter_prefix": prefix})
    return result


def catch_failed_s3_events(template: Template) -> Template:
    """Send S3 events that fail every retry (or expire) to the failed-events queue.

    For each function an S3 notification invokes: an event-invoke config on
    its ``live`` alias (what S3 invokes) with explicit retries and maximum
    event age from variables, and an ``on_failure`` destination to the
    encrypted SQS queue of infra/monitoring.tf. Lambda delivers to it with
    the function's role (``sqs:SendMessage`` in infra/iam.tf), from outside
    the VPC. The S3-event function names go to ``local.s3_event_functions``.
    """
    result = copy.deepcopy(template)
    resources = result.setdefault("resource", {})
    targets = sorted(
        {
            m.group(1)
            for n in resources.get("aws_s3_bucket_notification", {}).values()
            for t in n.get("lambda_function", [])
            for m in _FUNCTION_REF.finditer(t.get("lambda_function_arn", ""))
        }
    )
    configs = resources.setdefault("aws_lambda_function_event_invoke_config", {})
    for name in targets:
        if name not in _functions(result):
            raise StackError(f"an S3 notification targets {name}, which is not a function of the template")
        configs[name] = {
            "function_name": f"${{aws_lambda_function.{name}.function_name}}",
            "qualifier": ALIAS_NAME,
            "maximum_retry_attempts": "${var.s3_event_max_retries}",
            "maximum_event_age_in_seconds": "${var.s3_event_max_age_seconds}",
            "destination_config": {"on_failure": {"destination": FAILED_EVENTS_QUEUE_ARN}},
            # the alias must exist, and the role must be allowed to send first
            "depends_on": [f"aws_lambda_alias.{name}", f"aws_iam_role_policy.{_role(result, name)}"],
        }
    if not configs:
        resources.pop("aws_lambda_function_event_invoke_config")
    return merge_patch(result, {"locals": {"s3_event_functions": targets}})


def wire_job_queue(template: Template) -> Template:
    """Point the jobs' SQS event source mappings at the overlay's queues, bounded and with partial failures.

    Chalice builds a queue's ARN from the name in ``@app.on_sqs_message``
    (``efs-ml-jobs``, and its DLQ ``efs-ml-jobs-dlq``); the overlay's queues
    are per environment. The jobs queue's mapping runs at most
    ``var.job_max_concurrency`` workers (sized against EFS throughput,
    docs/jobs.md), the DLQ's at most 2 (Lambda's least). Both report failed
    messages one by one (``ReportBatchItemFailures``: the handlers return
    ``batchItemFailures``, which Chalice 1.34 cannot declare) and wait for the
    role that lets them receive. They invoke the function itself, not its
    ``live`` alias: the workers need no provisioned concurrency (a queue
    waits), and moto, which the rehearsal applies to, drops an alias
    qualifier from a mapping.
    """
    queues = {
        JOB_QUEUE_NAME: (JOB_QUEUE_ARN, JOB_MAX_CONCURRENCY),
        JOB_DLQ_NAME: (JOB_DLQ_ARN, JOB_DLQ_MAX_CONCURRENCY),
    }
    result = copy.deepcopy(template)
    mappings = result.get("resource", {}).get("aws_lambda_event_source_mapping", {})
    for key, mapping in mappings.items():
        arn = mapping.get("event_source_arn", "")
        if ":sqs:" not in arn:
            continue
        queue = arn.rsplit(":", 1)[-1]
        if queue not in queues:
            known = " and ".join(queues)
            raise StackError(f"{key}: an SQS mapping for {arn}, but the overlay only has the {known} queues")
        match = _FUNCTION_REF.search(mapping.get("function_name", ""))
        if match is None:
            raise StackError(f"{key}: the mapping names no function of the template")
        name = match.group(1)
        queue_arn, concurrency = queues[queue]
        mapping["event_source_arn"] = queue_arn
        mapping["function_response_types"] = ["ReportBatchItemFailures"]
        mapping["scaling_config"] = {"maximum_concurrency": concurrency}
        _add_depends_on(mapping, [f"aws_iam_role_policy.{_role(result, name)}"])
    return result


def require_api_key(template: Template) -> Template:
    """Make every REST operation (but CORS preflights) require the x-api-key header.

    Same Swagger that Chalice writes for ``api_key_required=True``, applied to
    all routes of the packaged stages; ``chalice local`` is not affected.
    """
    swagger_json = template.get("locals", {}).get("chalice_api_swagger")
    if swagger_json is None:
        return template
    swagger = json.loads(swagger_json)
    swagger.setdefault("securityDefinitions", {})["api_key"] = API_KEY_SCHEME
    swagger["x-amazon-apigateway-api-key-source"] = "HEADER"
    for path_item in swagger.get("paths", {}).values():
        for method, operation in path_item.items():
            if method.lower() in SWAGGER_OPERATIONS:
                operation["security"] = [{"api_key": []}]
    return merge_patch(template, {"locals": {"chalice_api_swagger": json.dumps(swagger)}})


def split_api_stage(template: Template) -> Template:
    """Replace the deployment's deprecated ``stage_name`` with an ``aws_api_gateway_stage``.

    AWS provider 5.x deprecates (and 6.0 removes) a stage created implicitly
    by ``aws_api_gateway_deployment``. Chalice's ``stage_description`` trick
    (a new deployment whenever the Swagger changes) becomes ``triggers``.
    """
    deployment = template.get("resource", {}).get("aws_api_gateway_deployment", {}).get("rest_api")
    if deployment is None:
        return template
    stage_name = deployment.get("stage_name")
    if not stage_name:
        raise StackError("aws_api_gateway_deployment.rest_api has no stage_name to move to a stage")
    outputs = {
        name: {"value": "${aws_api_gateway_stage.rest_api.invoke_url}"}
        for name, out in template.get("output", {}).items()
        if out.get("value") == "${aws_api_gateway_deployment.rest_api.invoke_url}"
    }
    return merge_patch(
        template,
        {
            "resource": {
                "aws_api_gateway_deployment": {
                    "rest_api": {
                        "stage_name": None,
                        "stage_description": None,
                        "triggers": {"redeployment": "${md5(local.chalice_api_swagger)}"},
                    }
                },
                "aws_api_gateway_stage": {
                    "rest_api": {
                        "rest_api_id": deployment["rest_api_id"],
                        "deployment_id": "${aws_api_gateway_deployment.rest_api.id}",
                        "stage_name": stage_name,
                    }
                },
            },
            "output": outputs,
        },
    )


def log_api_access(template: Template) -> Template:
    """Send the API stage's access log (ACCESS_LOG_FIELDS, one JSON line per
    request) to the overlay's retained, encrypted ``api_access`` log group.

    API Gateway writes it with the account's CloudWatch role, so the stage
    waits for ``aws_api_gateway_account.this`` (none when another stack owns
    that setting: var.manage_api_gateway_account).
    """
    if "rest_api" not in template.get("resource", {}).get("aws_api_gateway_stage", {}):
        return template  # no REST API (split_api_stage makes the stage)
    stage = template["resource"]["aws_api_gateway_stage"]["rest_api"]
    if "access_log_settings" in stage:
        raise StackError("the API stage already has access_log_settings; they come from the overlay")
    result = merge_patch(
        template,
        {
            "resource": {
                "aws_api_gateway_stage": {
                    "rest_api": {
                        "access_log_settings": {
                            "destination_arn": ACCESS_LOG_GROUP_ARN,
                            "format": json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":")),
                        }
                    }
                }
            }
        },
    )
    _add_depends_on(result["resource"]["aws_api_gateway_stage"]["rest_api"], ["aws_api_gateway_account.this"])
    return result


def add_gateway_responses(template: Template) -> Template:
    """Put API Gateway's own error responses (GATEWAY_RESPONSES) into the API body.

    As ``x-amazon-apigateway-gateway-responses`` they are part of the Swagger
    document that the REST API is defined by, so re-putting the body (the
    provider's default ``overwrite`` mode) cannot drop them, and the
    redeployment trigger (the body's hash) covers them.
    """
    swagger_json = template.get("locals", {}).get("chalice_api_swagger")
    if swagger_json is None:
        return template
    swagger = json.loads(swagger_json)
    swagger["x-amazon-apigateway-gateway-responses"] = {
        kind: {"responseTemplates": {"application/json": body}} for kind, body in sorted(GATEWAY_RESPONSES.items())
    }
    return merge_patch(template, {"locals": {"chalice_api_swagger": json.dumps(swagger)}})


def configure_rest_api(template: Template) -> Template:
    """Name the REST API per environment and take its endpoint type from ``var.api_endpoint_type``.

    Chalice names it after the app alone, so two environments in one account
    would show two identical names; and it makes it EDGE (a CloudFront hop;
    only a REGIONAL API may have its 29 s integration timeout raised).
    """
    if "rest_api" not in template.get("resource", {}).get("aws_api_gateway_rest_api", {}):
        return template
    return merge_patch(
        template,
        {
            "resource": {
                "aws_api_gateway_rest_api": {
                    "rest_api": {
                        "name": "${local.name}",
                        "endpoint_configuration": {"types": ["${var.api_endpoint_type}"]},
                    }
                }
            }
        },
    )


def name_schedules(template: Template) -> Template:
    """Prefix scheduled-event rule names with ``local.name``, so environments do not collide.

    Chalice names a rule after the function alone (``reclaim_debris-event``);
    EventBridge rule names are unique per account and region.
    """
    result = copy.deepcopy(template)
    for key, rule in result.get("resource", {}).get("aws_cloudwatch_event_rule", {}).items():
        rule["name"] = f"${{local.name}}-{key}"
    return result


def route_through_alias(template: Template) -> Template:
    """Give every function a ``live`` alias, optional provisioned concurrency, and invoke it via the alias.

    Provisioned concurrency needs a published version behind an alias, and is
    only used when callers invoke that alias, so API Gateway, the S3
    notification, scheduled-event targets and their permissions all target
    the alias.  A function not
    in ``var.provisioned_concurrency`` is not published and its alias points
    at ``$LATEST``, which costs nothing.
    """
    result = copy.deepcopy(template)
    resources = result.setdefault("resource", {})
    functions = _functions(result)
    aliases = resources.setdefault("aws_lambda_alias", {})
    provisioned = resources.setdefault("aws_lambda_provisioned_concurrency_config", {})
    for name in functions:
        enabled = f'contains(keys(var.provisioned_concurrency), "{name}")'
        functions[name]["publish"] = f"${{{enabled}}}"
        aliases[name] = {
            "name": ALIAS_NAME,
            "function_name": f"${{aws_lambda_function.{name}.function_name}}",
            "function_version": f"${{aws_lambda_function.{name}.version}}",
        }
        provisioned[name] = {
            "count": f"${{{enabled} ? 1 : 0}}",
            "function_name": f"${{aws_lambda_alias.{name}.function_name}}",
            "qualifier": f"${{aws_lambda_alias.{name}.name}}",
            "provisioned_concurrent_executions": f'${{lookup(var.provisioned_concurrency, "{name}", 0)}}',
        }

    def to_alias(text: str) -> str:
        return _FUNCTION_REF.sub(lambda m: f"${{aws_lambda_alias.{m.group(1)}.{m.group(2)}}}", text)

    for permission in resources.get("aws_lambda_permission", {}).values():
        if _FUNCTION_REF.search(permission.get("function_name", "")):
            permission["qualifier"] = ALIAS_NAME
    for notification in resources.get("aws_s3_bucket_notification", {}).values():
        for subscription in notification.get("lambda_function", []):
            subscription["lambda_function_arn"] = to_alias(subscription["lambda_function_arn"])
    for target in resources.get("aws_cloudwatch_event_target", {}).values():
        target["arn"] = to_alias(target["arn"])  # the permission allows the alias only
    local_values = result.get("locals", {})
    if "chalice_api_swagger" in local_values:
        local_values["chalice_api_swagger"] = to_alias(local_values["chalice_api_swagger"])
    return result


def offer_iam_auth(template: Template) -> Template:
    """Offer IAM authorization (SigV4) beside the API key, chosen by ``var.api_auth``.

    ``local.chalice_api_swagger`` (every operation needs the API key, from
    require_api_key) stays the default; ``local.chalice_api_swagger_iam`` is
    the same document with Chalice's IAMAuthorizer on every operation but
    CORS preflights (``authorizationType`` AWS_IAM) and no API key.
    ``local.api_body`` picks one; the REST API's body and its redeployment
    trigger use it, so switching redeploys.
    """
    swagger_json = template.get("locals", {}).get("chalice_api_swagger")
    if swagger_json is None:
        return template
    swagger = json.loads(swagger_json)
    swagger.pop("x-amazon-apigateway-api-key-source", None)
    swagger["securityDefinitions"] = {
        **{k: v for k, v in swagger.get("securityDefinitions", {}).items() if k != "api_key"},
        "sigv4": SIGV4_SCHEME,
    }
    for path_item in swagger.get("paths", {}).values():
        for method, operation in path_item.items():
            if method.lower() in SWAGGER_OPERATIONS:
                operation["security"] = [{"sigv4": []}]
    resources = template.get("resource", {})
    patch: Template = {"locals": {"chalice_api_swagger_iam": json.dumps(swagger), "api_body": API_BODY}}
    if "rest_api" in resources.get("aws_api_gateway_rest_api", {}):
        patch["resource"] = {"aws_api_gateway_rest_api": {"rest_api": {"body": "${local.api_body}"}}}
    if "rest_api" in resources.get("aws_api_gateway_deployment", {}):
        patch.setdefault("resource", {})["aws_api_gateway_deployment"] = {
            "rest_api": {"triggers": {"redeployment": "${md5(local.api_body)}"}}
        }
    return merge_patch(template, patch)


def add_function_outputs(template: Template) -> Template:
    """Add the ``function_arns`` output: Chalice function name -> function ARN."""
    arns = {name: f"${{aws_lambda_function.{name}.arn}}" for name in sorted(_functions(template))}
    return merge_patch(
        template,
        {"output": {"function_arns": {"description": "ARN of every Chalice function.", "value": arns}}},
    )


TRANSFORMATIONS: tuple[Callable[[Template], Template], ...] = (
    check_runtime,
    drop_null_provider,
    replace_version_pins,
    drop_chalice_duplicates,
    record_function_names,
    attach_vpc_and_efs,
    set_reserved_concurrency,
    deploy_from_s3_object,
    set_metrics_namespace,
    wire_bucket_notifications,
    add_notification_prefixes,
    catch_failed_s3_events,
    wire_job_queue,
    require_api_key,
    add_gateway_responses,
    configure_rest_api,
    split_api_stage,
    log_api_access,  # after split_api_stage, which makes the stage
    name_schedules,
    route_through_alias,  # after the steps that match ${aws_lambda_function.X.arn}
    offer_iam_auth,  # after every step that edits the API body
    add_function_outputs,
)


def transform(template: Template) -> Template:
    """Apply every transformation, in order, to a ``chalice.tf.json`` document."""
    for step in TRANSFORMATIONS:
        template = step(template)
    return template


def run_chalice_package(app_dir: Path, stage: str, out_dir: Path, chalice: str) -> str:
    """Run ``chalice package --pkg-format terraform``; return its output.

    Raises StackError if it fails or warns that dependencies could not be
    bundled for Lambda (the package would be missing them at run time).
    """
    if out_dir.exists():
        shutil.rmtree(out_dir)
    # Chalice needs a region to package, though the template does not use it.
    env = {"AWS_DEFAULT_REGION": "us-east-1", **os.environ}
    proc = subprocess.run(
        [
            chalice,
            "--project-dir",
            str(app_dir),
            "package",
            "--pkg-format",
            "terraform",
            "--stage",
            stage,
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise StackError(f"chalice package failed ({proc.returncode}):\n{output}")
    if DEPENDENCY_WARNING in output:
        raise StackError(f"chalice package could not bundle dependencies for Lambda:\n{output}")
    return output


def unzipped_size(zip_path: Path) -> int:
    """Bytes the package takes once Lambda has unzipped it."""
    with zipfile.ZipFile(zip_path) as archive:
        return sum(info.file_size for info in archive.infolist())


def assemble_stack(chalice_dir: Path, infra_dir: Path, stack_dir: Path, max_unzipped: int = MAX_UNZIPPED_BYTES) -> Path:
    """Write the deployable stack: transformed chalice.tf.json, overlay, tests, zip.

    The user's files in ``stack_dir`` (USER_FILES: state, tfvars, backend,
    providers already installed) are kept, so re-packaging does not lose
    track of a deployed stack. Returns ``stack_dir``.
    """
    zip_path = chalice_dir / "deployment.zip"
    size = unzipped_size(zip_path)
    if size >= max_unzipped:
        raise StackError(
            f"deployment.zip unzips to {size / 2**20:.1f} MiB, Lambda allows {max_unzipped / 2**20:.1f} MiB: "
            "move heavy dependencies to EFS (see infra/README.md)"
        )
    template = transform(json.loads((chalice_dir / "chalice.tf.json").read_text()))

    stack_dir.mkdir(parents=True, exist_ok=True)
    for entry in stack_dir.iterdir():
        if not any(fnmatch.fnmatch(entry.name, pattern) for pattern in USER_FILES):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (stack_dir / "chalice.tf.json").write_text(json.dumps(template, indent=2, sort_keys=True) + "\n")
    shutil.copy2(zip_path, stack_dir / "deployment.zip")
    for source in sorted(infra_dir.glob("*.tf")) + [infra_dir / "terraform.tfvars.example"]:
        shutil.copy2(source, stack_dir / source.name)
    shutil.copytree(infra_dir / "tests", stack_dir / "tests")
    return stack_dir


def stage_stack_dir(build_dir: Path, stage: str) -> Path:
    """Where stage ``stage`` is assembled: ``<build_dir>/stacks/<stage>``."""
    if not _STAGE_NAME.match(stage):
        raise StackError(f"stage {stage!r} must be 1-16 lowercase letters, digits or dashes (it is var.environment)")
    return build_dir / STACKS_DIR / stage


def _environment_setting(stack_dir: Path) -> str | None:
    """The ``environment`` the deployer's own tfvars in ``stack_dir`` set, if any."""
    found = None
    for path in sorted(stack_dir.glob("terraform.tfvars")) + sorted(stack_dir.glob("*.auto.tfvars")):
        match = _ENVIRONMENT_SETTING.search(path.read_text())
        found = match.group(1) if match else found
    return found


def migrate_legacy_stack(build_dir: Path) -> Path | None:
    """Move a stack packaged before per-stage folders (``<build>/stack``) to
    ``<build>/stacks/<its environment>``; return where it went (None: nothing to move).

    Its environment is what its tfvars set, else ``dev`` (var.environment's
    default): whatever stage was packaged last, that is the environment its
    state describes. One rename moves state, lock file, providers, tfvars and
    backend together. Refuses if the target already exists (never merges two states).
    """
    legacy = build_dir / LEGACY_STACK_DIR
    if not legacy.is_dir():
        return None
    environment = _environment_setting(legacy) or "dev"
    target = stage_stack_dir(build_dir, environment)
    if target.exists():
        raise StackError(
            f"{legacy} (environment {environment}) and {target} both exist; "
            "compare their terraform.tfstate and keep one by hand"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    legacy.rename(target)
    return target


def check_stage_environment(stack_dir: Path, stage: str) -> None:
    """Refuse when the deployer's tfvars in ``stack_dir`` name another
    environment than ``stage``: that would rename every resource of the stage."""
    configured = _environment_setting(stack_dir) if stack_dir.is_dir() else None
    if configured not in (None, stage):
        raise StackError(
            f"{stack_dir} sets environment = {configured!r} but is the stack of stage {stage!r}; "
            "the environment comes from the stage: remove the setting"
        )


def set_stage(stack_dir: Path, stage: str) -> None:
    """Make ``stage`` the stack's environment (STAGE_VARS_FILE, which takes precedence over terraform.tfvars)."""
    check_stage_environment(stack_dir, stage)
    (stack_dir / STAGE_VARS_FILE).write_text(json.dumps({"environment": stage}, indent=2) + "\n")


def package(app_dir: Path, stage: str, build_dir: Path, chalice: str) -> Path:
    """``chalice package`` stage ``stage`` and assemble it into its own
    ``<build_dir>/stacks/<stage>``; other stages' folders are not touched."""
    if stage == "local":
        raise StackError("the local stage is served by `chalice local`, not packaged")
    stack_dir = stage_stack_dir(build_dir, stage)
    if (build_dir / LEGACY_STACK_DIR).is_dir():
        raise StackError(
            f"{build_dir / LEGACY_STACK_DIR} holds a stack packaged before per-stage folders; "
            "run `make migrate-stack` (moves it to stacks/<its environment>, state included) first"
        )
    check_stage_environment(stack_dir, stage)
    chalice_dir = build_dir / "chalice" / stage
    run_chalice_package(app_dir, stage, chalice_dir, chalice)
    assemble_stack(chalice_dir, Path(__file__).resolve().parent, stack_dir)
    set_stage(stack_dir, stage)
    return stack_dir


def main(argv: list[str] | None = None) -> int:
    """Command line: package the app and assemble ``<build-dir>/stacks/<stage>``
    (``--migrate``: move a pre-stage ``<build-dir>/stack`` there first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--chalice", default=str(Path(sys.executable).with_name("chalice")))
    parser.add_argument("--migrate", action="store_true", help="only move <build-dir>/stack to stacks/<environment>")
    args = parser.parse_args(argv)
    try:
        if args.migrate:
            moved = migrate_legacy_stack(args.build_dir)
            print(f"stack: {'moved to ' + str(moved) if moved else 'no ' + str(args.build_dir / 'stack') + ' to move'}")
            return 0
        stack_dir = package(args.app_dir, args.stage, args.build_dir, args.chalice)
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    size = (stack_dir / "deployment.zip").stat().st_size
    unzipped = unzipped_size(stack_dir / "deployment.zip")
    print(
        f"stack: {stack_dir} ready (stage {args.stage}, deployment.zip {size / 2**20:.2f} MiB, "
        f"{unzipped / 2**20:.1f} MiB unzipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
