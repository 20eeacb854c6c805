"""moto server with the smallest patches the local rehearsal needs.

Build-time code for ``make deploy-local`` only.  Written against moto 5.2.5
(pinned in requirements-dev.txt).  It refuses to start on another moto
version, and each patch names the moto function it wraps, so an upgrade is a
deliberate step: re-check each gap below (is it still there? does the patch
still fit?), then update TESTED_MOTO.

Gaps bridged, each where it is patched below:

1. ``PutRestApi`` refuses Swagger 2.0 (moto only reads OpenAPI 3), while
   Chalice emits Swagger 2.0 and real API Gateway accepts it.
2. Lambda drops ``FileSystemConfigs``: create/update ignore it and
   GetFunction never returns it, so Terraform would see a diff forever.
3. ``UpdateRestApi`` patch operations ``add``/``remove`` on
   ``/binaryMediaTypes/<escaped type>`` carry the type in the path, not in
   ``value``, as the Terraform provider sends them; moto reads ``value``.
4. Security group rules keep their description only for CIDR sources:
   one on a referenced group or a prefix list is dropped, so Terraform
   plans to re-add it on every run.
5. EFS ``DeleteFileSystemPolicy`` is not implemented (HTTP 500, which
   the provider retries for minutes during destroy).
6. AWS-managed policies exist only with ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``,
   set here before moto loads (the stack attaches none any more; kept so a
   policy attachment added later behaves as in AWS).
7. ``PutRestApi`` ignores ``x-amazon-apigateway-gateway-responses``: the
   API's own error responses, which the stack defines in the body, never
   appear in GetGatewayResponses. Real API Gateway imports them, and in
   ``overwrite`` mode replaces any that were put separately.
8. SQS returns a queue's ``RedrivePolicy`` as compact JSON (as Terraform's
   ``jsonencode`` writes it); moto re-serialises it with spaces, so every
   plan would update the jobs queue (and all that reads its ARN).

Usage: ``python -m infra.local.moto_shim -H 127.0.0.1 -p PORT`` (moto_server's arguments).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import os
import sys
from typing import Any, Callable

# Gap 6: read by moto.settings when the IAM backend is created.
os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"

import moto  # noqa: E402  (the variable above must be set first)
from moto import server  # noqa: E402
from moto.apigateway import models as apigateway_models  # noqa: E402
from moto.awslambda import models as lambda_models  # noqa: E402
from moto.ec2.models import security_groups as sg_models  # noqa: E402
from moto.efs.responses import EFSResponse  # noqa: E402
from moto.sqs import models as sqs_models  # noqa: E402

TESTED_MOTO = "5.2.5"
if moto.__version__ != TESTED_MOTO:
    sys.exit(
        f"moto_shim.py was written for moto {TESTED_MOTO}, found {moto.__version__}: "
        "re-check the gaps in its docstring, then update TESTED_MOTO"
    )


def _wrap(owner: Any, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: replace ``owner.name`` by the decorated function, given the original first."""
    original = getattr(owner, name)  # AttributeError here means moto changed: re-check the gap

    def decorate(replacement: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def patched(*args: Any, **kwargs: Any) -> Any:
            return replacement(original, *args, **kwargs)

        setattr(owner, name, patched)
        return patched

    return decorate


# Gap 1 (and 7, below): relabel Swagger 2.0 as OpenAPI 3.0. moto only reads `paths`, the
# methods' `responses` and `x-amazon-apigateway-integration`, which both
# versions spell the same; validation is skipped since the document is not
# really OpenAPI 3.
@_wrap(apigateway_models.APIGatewayBackend, "put_rest_api")
def _put_rest_api(
    original: Callable[..., Any],
    self: Any,
    function_id: str | None,
    api_doc: dict[str, Any],
    fail_on_warnings: bool,
    mode: str = "merge",
) -> Any:
    if str(api_doc.get("swagger", "")).startswith("2."):
        api_doc = {k: v for k, v in api_doc.items() if k != "swagger"} | {"openapi": "3.0.1"}
        fail_on_warnings = False
    api = original(self, function_id, api_doc, fail_on_warnings, mode)
    # Gap 7: import the gateway responses of the body, as API Gateway does.
    if mode == "overwrite":
        api.gateway_responses = {}
    for response_type, response in (api_doc.get("x-amazon-apigateway-gateway-responses") or {}).items():
        api.put_gateway_response(
            response_type,
            response.get("statusCode"),
            response.get("responseParameters") or {},
            response.get("responseTemplates") or {},
        )
    return api


# Gap 3: take the media type from the JSON-pointer path when `value` is absent.
@_wrap(apigateway_models.RestAPI, "apply_patch_operations")
def _apply_patch_operations(original: Callable[..., Any], self: Any, patch_operations: list[dict[str, Any]]) -> Any:
    prefix = "/binaryMediaTypes/"
    fixed = []
    for op in patch_operations:
        if op.get("op") in ("add", "remove") and op.get("path", "").startswith(prefix) and not op.get("value"):
            # JSON pointer escapes: "~1" is "/", "~0" is "~".
            op = {**op, "value": op["path"][len(prefix) :].replace("~1", "/").replace("~0", "~")}
        fixed.append(op)
    return original(self, fixed)


# Gap 2: keep FileSystemConfigs on the function and return it like AWS does.
@_wrap(lambda_models.LambdaFunction, "__init__")
def _function_init(
    original: Callable[..., Any], self: Any, account_id: str, spec: dict[str, Any], region: str, version: int = 1
) -> None:
    original(self, account_id, spec, region, version)
    self.file_system_configs = copy.deepcopy(spec.get("FileSystemConfigs") or [])


@_wrap(lambda_models.LambdaFunction, "get_configuration")
def _function_get_configuration(original: Callable[..., Any], self: Any, on_create: bool = False) -> Any:
    config = original(self, on_create)
    if getattr(self, "file_system_configs", None):
        config["FileSystemConfigs"] = self.file_system_configs
    return config


@_wrap(lambda_models.LambdaFunction, "update_configuration")
def _function_update_configuration(original: Callable[..., Any], self: Any, config_updates: dict[str, Any]) -> Any:
    if "FileSystemConfigs" in config_updates:
        self.file_system_configs = copy.deepcopy(config_updates["FileSystemConfigs"])
    return original(self, config_updates)


# Gap 4: remember the description of group and prefix-list sources too.
@_wrap(sg_models.SecurityGroupRule, "__init__")
def _rule_init(original: Callable[..., Any], self: Any, *args: Any, **kwargs: Any) -> None:
    original(self, *args, **kwargs)
    bound = inspect.signature(original).bind(self, *args, **kwargs).arguments
    sources = (bound.get("ip_range"), bound.get("source_group"), bound.get("prefix_list_id"))
    self.shim_description = next((s["Description"] for s in sources if s and s.get("Description")), None)


# moto declares `description` as a method; a property is what its callers read.
sg_models.SecurityGroupRule.description = property(lambda self: self.shim_description)  # type: ignore[method-assign,assignment]


# Gap 5: DeleteFileSystemPolicy, unless moto has gained it.
def _delete_file_system_policy(self: Any) -> tuple[str, dict[str, str]]:
    file_system_id = self._get_param("FileSystemId")
    self.efs_backend.describe_file_system_policy(file_system_id)  # AWS's errors for a missing fs/policy
    self.efs_backend.file_systems_by_id[file_system_id].file_system_policy = None
    return "{}", {"Content-Type": "application/json"}


if not hasattr(EFSResponse, "delete_file_system_policy"):
    EFSResponse.delete_file_system_policy = _delete_file_system_policy  # type: ignore[attr-defined]  # the gap itself


# Gap 8: RedrivePolicy as compact JSON, like SQS.
_queue_attributes = sqs_models.Queue.attributes  # a property; AttributeError/TypeError here: re-check the gap


def _compact_attributes(self: Any) -> dict[str, Any]:
    result: dict[str, Any] = _queue_attributes.fget(self)  # type: ignore[attr-defined]  # a property, typed as its getter
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
    return result


sqs_models.Queue.attributes = property(_compact_attributes)  # type: ignore[method-assign,assignment]  # as above


if __name__ == "__main__":
    server.main(sys.argv[1:])
