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

    python infra/stack.py --app-dir . --stage dev --build-dir build
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
from pathlib import Path
from typing import Any, Callable, Iterable

Template = dict[str, Any]

RUNTIME = "python3.12"
MOUNT_PATH = "/mnt/efs"
ALIAS_NAME = "live"
MAX_ZIP_BYTES = 50 * 1024 * 1024
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
    "aws_iam_role_policy.lambda",  # the roles must allow EFS before the first mount
    "aws_iam_role_policy.api",
    "aws_iam_role_policy_attachment.vpc_access",  # CreateFunction checks ENI rights
    "aws_iam_role_policy_attachment.api_vpc_access",
)
# Keys that `@app.on_s3_event(prefix='models/')` subscribes to, and the
# prefixes the same handler also serves (it ingests inputs/ too).
EXTRA_NOTIFICATION_PREFIXES = {"models/": ("inputs/",)}
SWAGGER_OPERATIONS = frozenset(
    {"get", "put", "post", "delete", "patch", "head", "x-amazon-apigateway-any-method"}
)  # not "options": CORS preflights carry no API key
API_KEY_SCHEME = {"type": "apiKey", "name": "x-api-key", "in": "header"}

# Files of the person deploying that re-packaging must not delete.
USER_FILES = (".terraform", ".terraform.lock.hcl", "terraform.tfstate*", "terraform.tfvars",
              "*.auto.tfvars", "backend.tf", "outputs.json")

_FUNCTION_REF = re.compile(r"\$\{aws_lambda_function\.([A-Za-z0-9_-]+)\.(arn|invoke_arn)\}")


class StackError(Exception):
    """The Chalice output cannot be turned into the stack we promise."""


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: dicts merge, ``None`` deletes a key.

    Chalice's ``TemplateDeepMerger`` merges the same way but keeps ``None`` as
    a JSON ``null``, which Terraform rejects where a block is expected; hence
    this variant.  Returns a new object; the arguments are not modified.
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
    return template.get("resource", {}).get("aws_lambda_function", {})


def _add_depends_on(block: dict[str, Any], addresses: Iterable[str]) -> None:
    existing = block.setdefault("depends_on", [])
    existing.extend(a for a in addresses if a not in existing)


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


def record_function_names(template: Template) -> Template:
    """Publish the functions to the overlay and the tests as locals.

    ``local.chalice_function_names`` (Chalice name -> Lambda name) drives one
    log group per function; ``local.chalice_functions`` (Chalice name ->
    resource) lets infra/tests assert on every function, however many.
    """
    functions = _functions(template)
    names = {name: f["function_name"] for name, f in sorted(functions.items())}
    objects = {name: f"${{aws_lambda_function.{name}}}" for name in sorted(functions)}
    return merge_patch(template, {"locals": {"chalice_function_names": names, "chalice_functions": objects}})


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
        targets = {m.group(1) for t in notification.get("lambda_function", [])
                   for m in _FUNCTION_REF.finditer(t.get("lambda_function_arn", ""))}
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
    outputs = {name: {"value": "${aws_api_gateway_stage.rest_api.invoke_url}"}
               for name, out in template.get("output", {}).items()
               if out.get("value") == "${aws_api_gateway_deployment.rest_api.invoke_url}"}
    return merge_patch(template, {
        "resource": {
            "aws_api_gateway_deployment": {"rest_api": {
                "stage_name": None,
                "stage_description": None,
                "triggers": {"redeployment": "${md5(local.chalice_api_swagger)}"},
            }},
            "aws_api_gateway_stage": {"rest_api": {
                "rest_api_id": deployment["rest_api_id"],
                "deployment_id": "${aws_api_gateway_deployment.rest_api.id}",
                "stage_name": stage_name,
            }},
        },
        "output": outputs,
    })


def deploy_with_gateway_responses(template: Template) -> Template:
    """Deploy the API after the overlay's gateway responses, and again when they change.

    API Gateway applies a gateway response only through a deployment, so
    the first deployment must wait for ``aws_api_gateway_gateway_response.errors``
    (infra/api.tf) and a changed template must trigger a new one.
    """
    deployment = template.get("resource", {}).get("aws_api_gateway_deployment", {}).get("rest_api")
    if deployment is None:
        return template
    depends_on = sorted(set(deployment.get("depends_on", [])) | {"aws_api_gateway_gateway_response.errors"})
    return merge_patch(template, {"resource": {"aws_api_gateway_deployment": {"rest_api": {
        "depends_on": depends_on,
        "triggers": {"gateway_responses": "${md5(jsonencode(local.gateway_error_templates))}"},
    }}}})


def route_through_alias(template: Template) -> Template:
    """Give every function a ``live`` alias, optional provisioned concurrency, and invoke it via the alias.

    Provisioned concurrency needs a published version behind an alias, and is
    only used when callers invoke that alias, so API Gateway, the S3
    notification and their permissions all target the alias.  A function not
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
    local_values = result.get("locals", {})
    if "chalice_api_swagger" in local_values:
        local_values["chalice_api_swagger"] = to_alias(local_values["chalice_api_swagger"])
    return result


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
    record_function_names,
    attach_vpc_and_efs,
    set_reserved_concurrency,
    wire_bucket_notifications,
    add_notification_prefixes,
    require_api_key,
    split_api_stage,
    deploy_with_gateway_responses,
    route_through_alias,  # after the steps that match ${aws_lambda_function.X.arn}
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
        [chalice, "--project-dir", str(app_dir), "package", "--pkg-format", "terraform",
         "--stage", stage, str(out_dir)],
        capture_output=True, text=True, env=env, check=False,
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise StackError(f"chalice package failed ({proc.returncode}):\n{output}")
    if DEPENDENCY_WARNING in output:
        raise StackError(f"chalice package could not bundle dependencies for Lambda:\n{output}")
    return output


def assemble_stack(chalice_dir: Path, infra_dir: Path, stack_dir: Path) -> Path:
    """Write the deployable stack: transformed chalice.tf.json, overlay, tests, zip.

    The user's files in ``stack_dir`` (USER_FILES: state, tfvars, backend,
    providers already installed) are kept, so re-packaging does not lose
    track of a deployed stack. Returns ``stack_dir``.
    """
    zip_path = chalice_dir / "deployment.zip"
    size = zip_path.stat().st_size
    if size >= MAX_ZIP_BYTES:
        raise StackError(
            f"deployment.zip is {size / 2**20:.1f} MiB, over {MAX_ZIP_BYTES // 2**20} MiB: "
            "move heavy dependencies to a layer or EFS (see infra/README.md)"
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


def main(argv: list[str] | None = None) -> int:
    """Command line: package the app and assemble ``<build-dir>/stack``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-dir", type=Path, default=Path("."))
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--chalice", default=str(Path(sys.executable).with_name("chalice")))
    args = parser.parse_args(argv)
    try:
        if args.stage == "local":
            raise StackError("the local stage is served by `chalice local`, not packaged")
        chalice_dir = args.build_dir / "chalice"
        run_chalice_package(args.app_dir, args.stage, chalice_dir, args.chalice)
        stack_dir = assemble_stack(chalice_dir, Path(__file__).resolve().parent, args.build_dir / "stack")
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    size = (stack_dir / "deployment.zip").stat().st_size
    print(f"stack: {stack_dir} ready (stage {args.stage}, deployment.zip {size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
