"""Local deployment rehearsal: apply the packaged stack to moto, verify, re-plan, destroy.

Build-time code for ``make deploy-local`` and tests/infra.  Steps:

1. start the patched moto server (moto_shim.py) on a free loopback port;
2. ``terraform apply`` a copy of the packaged stack plus moto_override.tf;
3. check with boto3 what Terraform cannot see for itself: every function has
   its VpcConfig and the access point mounted at /mnt/efs, the access point
   and one mount target per subnet exist, the bucket notification reaches
   the S3 handler for models/ and inputs/, the REST API has every route, its
   gateway responses and a key-protected usage plan; every function runs
   the one uploaded package; failed S3 events go to the encrypted queue;
   the alarms, the dashboard and the sweep's schedule exist;
4. a second ``terraform plan -detailed-exitcode`` must find no changes;
5. put object versions in the bucket and tear it down with infra/empty_bucket.py
   (notification off, then every version deleted), as ``make destroy`` does (``bucket_force_destroy`` is false, so the
   destroy fails unless that worked);
6. ``terraform destroy``, after which moto must hold none of the stack.

moto does not run Lambda code (no Docker here); only the wiring is proven.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3

from demo.target import from_outputs
from infra.tfcli import cli_env, terraform

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the project root, where `python -m infra.…` runs
REGION = "us-east-1"
MOUNT_PATH = "/mnt/efs"


class RehearsalError(AssertionError):
    """The stack did not deploy, verify, re-plan or destroy as promised."""


@dataclass
class Report:
    """What the rehearsal did and how long each step took (seconds)."""

    timings: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: int = 0  # managed resources in the state after apply


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def moto_server(python: str, log_path: Path, timeout: float = 30) -> Iterator[str]:
    """Run moto_shim.py on a free loopback port for the duration of the block; yield its URL."""
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [python, "-m", "infra.local.moto_shim", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RehearsalError(f"moto server exited ({proc.returncode}); see {log_path}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RehearsalError(f"moto server not listening after {timeout}s; see {log_path}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check(report: Report, condition: bool, message: str) -> None:
    if not condition:
        raise RehearsalError(message)
    report.checks.append(message)


def _expected_routes(stack_dir: Path) -> set[tuple[str, str]]:
    """(path, METHOD) pairs of the packaged API, read from its Swagger document."""
    template = json.loads((stack_dir / "chalice.tf.json").read_text())
    swagger = json.loads(template["locals"]["chalice_api_swagger"])
    return {
        (path, method.upper())
        for path, item in swagger["paths"].items()
        for method in item
        if not method.startswith("x-")
    }


def verify(
    clients: Callable[[str], Any], outputs: dict[str, Any], routes: set[tuple[str, str]], report: Report
) -> None:
    """Check the deployed wiring through the AWS APIs (here: moto's)."""
    subnets = set(outputs["private_subnet_ids"])
    access_point = outputs["efs_access_point_arn"]
    functions = outputs["function_arns"]
    lam = clients("lambda")
    for name, arn in functions.items():
        config = lam.get_function(FunctionName=arn)["Configuration"]
        vpc = config.get("VpcConfig") or {}
        _check(
            report,
            set(vpc.get("SubnetIds", [])) == subnets
            and vpc.get("SecurityGroupIds") == [outputs["lambda_security_group_id"]],
            f"{name}: VpcConfig in every private subnet with the Lambda security group",
        )
        _check(
            report,
            config.get("FileSystemConfigs") == [{"Arn": access_point, "LocalMountPath": MOUNT_PATH}],
            f"{name}: mounts the access point at {MOUNT_PATH}",
        )
        _check(report, config.get("Runtime") == "python3.12", f"{name}: runtime python3.12")

    efs = clients("efs")
    fs_id = outputs["efs_file_system_id"]
    points = efs.describe_access_points(FileSystemId=fs_id)["AccessPoints"]
    _check(
        report,
        [p["AccessPointArn"] for p in points] == [access_point]
        and points[0]["PosixUser"]["Uid"] == 1000
        and points[0]["RootDirectory"]["Path"] == "/lambda",
        "access point exists: uid 1000, root /lambda",
    )
    targets = efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]
    _check(report, sorted(t["SubnetId"] for t in targets) == sorted(subnets), "one mount target per private subnet")

    s3 = clients("s3")
    bucket = outputs["s3_bucket_name"]
    notifications = s3.get_bucket_notification_configuration(Bucket=bucket).get("LambdaFunctionConfigurations", [])
    prefixes = {
        rule["Value"]: n["LambdaFunctionArn"]
        for n in notifications
        for rule in n["Filter"]["Key"]["FilterRules"]
        if rule["Name"] == "prefix"
    }
    handler_arns = {arn + ":live" for arn in functions.values()}
    kinds = {tuple(sorted(n["Events"])) for n in notifications}
    _check(
        report,
        set(prefixes) == {"models/", "inputs/"}
        and set(prefixes.values()) <= handler_arns
        and kinds == {("s3:ObjectCreated:*", "s3:ObjectRemoved:*")},
        "bucket notification sends models/ and inputs/ ObjectCreated and ObjectRemoved to the S3 handler's live alias",
    )
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    _check(report, all(block.values()), "bucket public access block fully on")

    api = clients("apigateway")
    api_id = outputs["rest_api_id"]
    deployed = {
        (r["path"], m)
        for r in api.get_resources(restApiId=api_id, limit=500)["items"]
        for m in r.get("resourceMethods", {})
    }
    _check(report, bool(routes) and routes <= deployed, f"REST API has every route: {sorted(routes)}")
    plans = api.get_usage_plans(keyId=outputs["api_key_id"])["items"]
    _check(
        report,
        any({"apiId": api_id, "stage": "api"} in p.get("apiStages", []) for p in plans),
        "API key belongs to a usage plan on the api stage",
    )


def _stack_name(stack_dir: Path) -> str:
    """``local.name`` of the rehearsed stack: the default prefix and the
    packaged stage's environment (stage.auto.tfvars.json; the rehearsal
    leaves terraform.tfvars out)."""
    stage_vars = stack_dir / "stage.auto.tfvars.json"
    environment = json.loads(stage_vars.read_text())["environment"] if stage_vars.exists() else "dev"
    return f"efs-ml-{environment}"


def _package_sha256(stack_dir: Path) -> str:
    """The package's SHA-256 as Lambda reports it (CodeSha256: base64)."""
    return base64.b64encode(hashlib.sha256((stack_dir / "deployment.zip").read_bytes()).digest()).decode()


def verify_operations(clients: Callable[[str], Any], outputs: dict[str, Any], stack_dir: Path, report: Report) -> None:
    """The package upload, the failure path of S3 events, the alarms and the dashboard."""
    lam = clients("lambda")
    functions = outputs["function_arns"]
    code = _package_sha256(stack_dir)
    name = _stack_name(stack_dir)
    s3 = clients("s3")
    package = s3.head_object(Bucket=outputs["artifacts_bucket_name"], Key="lambda/deployment.zip")
    _check(
        report,
        package["ContentLength"] == (stack_dir / "deployment.zip").stat().st_size
        and outputs["artifacts_bucket_name"] != outputs["s3_bucket_name"],
        "deployment package uploaded once to the artifacts bucket",
    )
    _check(
        report,
        all(lam.get_function(FunctionName=arn)["Configuration"]["CodeSha256"] == code for arn in functions.values()),
        "every function runs the uploaded package (CodeSha256)",
    )
    timeouts = {name: lam.get_function(FunctionName=arn)["Configuration"]["Timeout"] for name, arn in functions.items()}
    _check(
        report,
        timeouts["api_handler"] <= 29 and timeouts["on_object_created"] == 900,
        f"api_handler ends before API Gateway's 29 s, the S3 handler has 900 s: {timeouts}",
    )

    queue_url = outputs["failed_events_queue_url"]
    queue = clients("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    _check(report, queue.get("SqsManagedSseEnabled") == "true", "failed-events queue is encrypted (SSE-SQS)")
    invoke = lam.get_function_event_invoke_config(FunctionName=functions["on_object_created"], Qualifier="live")
    _check(
        report,
        invoke["MaximumRetryAttempts"] == 2
        and invoke["MaximumEventAgeInSeconds"] == 10800
        and invoke["DestinationConfig"]["OnFailure"]["Destination"] == queue["QueueArn"],
        "S3 events: 2 retries, 3 h maximum age, then the failed-events queue",
    )

    cloudwatch = clients("cloudwatch")
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    names = {arn.split(":")[-1] for arn in functions.values()}
    expected = {f"{n}-{kind}" for n in names for kind in ("errors", "throttles")} | {
        f"{name}-failed-events",
        f"{name}-api-5xx",
        f"{name}-api-latency-p99",
    }
    s3_handler = functions["on_object_created"].split(":")[-1]
    expected |= {f"{s3_handler}-destination-failures", f"{s3_handler}-events-dropped"}
    _check(report, expected <= set(alarms), f"alarms on every function, the queue and the API: {sorted(expected)}")
    _check(
        report,
        alarms[f"{s3_handler}-destination-failures"]["MetricName"] == "DestinationDeliveryFailures"
        and alarms[f"{s3_handler}-events-dropped"]["MetricName"] == "AsyncEventsDropped",
        "the S3 handler alarms on undeliverable and dropped events",
    )
    queue_name = queue["QueueArn"].split(":")[-1]
    _check(
        report,
        alarms[f"{name}-failed-events"]["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}],
        "the failed-events alarm watches the queue",
    )
    body = json.loads(cloudwatch.get_dashboard(DashboardName=outputs["dashboard_name"])["DashboardBody"])
    text = json.dumps(body)
    _check(
        report,
        all(
            m in text
            for m in ("IngestBytes", "IngestDurationMs", "ModelLoadMs", "ModelCacheHit", "ColdStart", "errorCode")
        ),
        "dashboard shows the EMF metrics and errors by code",
    )

    api = clients("apigateway")
    rest = api.get_rest_api(restApiId=outputs["rest_api_id"])
    _check(
        report,
        rest["name"] == name and rest["endpointConfiguration"]["types"] == ["REGIONAL"],
        "REST API named per environment, REGIONAL",
    )
    responses = {r["responseType"]: r for r in api.get_gateway_responses(restApiId=outputs["rest_api_id"])["items"]}
    _check(
        report,
        {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
        and all(
            "$context.requestId" in responses[t]["responseTemplates"]["application/json"]
            for t in ("DEFAULT_4XX", "DEFAULT_5XX")
        ),
        "gateway responses come from the API body",
    )

    stage = api.get_stage(restApiId=outputs["rest_api_id"], stageName="api")
    (group,) = clients("logs").describe_log_groups(logGroupNamePrefix=outputs["api_access_log_group"])["logGroups"]
    _check(
        report,
        (stage.get("accessLogSettings") or {}).get("destinationArn", "").rstrip(":*") == group["arn"].rstrip(":*")
        and "$context.identity.sourceIp" in stage["accessLogSettings"]["format"]
        and group.get("kmsKeyId")
        and group.get("retentionInDays") == 365,
        "the API stage writes its access log to the retained, KMS-encrypted group",
    )

    events = clients("events")
    rules = [r for r in events.list_rules(NamePrefix=f"{name}-")["Rules"]]
    targets = {t["Arn"] for r in rules for t in events.list_targets_by_rule(Rule=r["Name"])["Targets"]}
    _check(
        report,
        bool(rules) and targets == {functions["reclaim_debris"] + ":live"},
        "the hourly sweep's rule invokes its live alias",
    )


def verify_jobs(clients: Callable[[str], Any], outputs: dict[str, Any], report: Report) -> None:
    """Batch jobs (infra/jobs.tf): the queue and its DLQ, their mappings, the DLQ's alarms."""
    sqs = clients("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=outputs["job_queue_url"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["job_dlq_url"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(queue.get("RedrivePolicy", "{}"))
    _check(
        report,
        queue.get("SqsManagedSseEnabled") == "true"
        and dlq.get("SqsManagedSseEnabled") == "true"
        and redrive.get("deadLetterTargetArn") == dlq["QueueArn"]
        and int(redrive.get("maxReceiveCount", 0)) == 3,
        "jobs queue and DLQ are encrypted; a block goes to the DLQ after 3 receives",
    )

    def mapped(queue_arn: str, function: str, concurrency: int) -> bool:
        """The queue's one mapping runs ``function``, at most ``concurrency`` at once, with partial failures."""
        found = clients("lambda").list_event_source_mappings(EventSourceArn=queue_arn)["EventSourceMappings"]
        return (
            len(found) == 1
            and found[0]["FunctionArn"].startswith(outputs["function_arns"][function])
            and found[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"]
            and found[0].get("ScalingConfig", {}).get("MaximumConcurrency") == concurrency
        )

    _check(
        report,
        mapped(queue["QueueArn"], "run_job_blocks", 10),
        "run_job_blocks reads the jobs queue: at most 10 at once, partial batch failures",
    )
    _check(
        report,
        mapped(dlq["QueueArn"], "fail_dead_blocks", 2) and int(dlq.get("VisibilityTimeout", 0)) >= 60,
        "fail_dead_blocks reads the jobs DLQ: at most 2 at once, partial batch failures",
    )
    alarms = {a["AlarmName"]: a for a in clients("cloudwatch").describe_alarms()["MetricAlarms"]}
    on_dlq = [{"Name": "QueueName", "Value": dlq["QueueArn"].split(":")[-1]}]
    _check(
        report,
        alarms.get("efs-ml-dev-jobs-dlq", {}).get("Dimensions") == on_dlq
        and alarms.get("efs-ml-dev-jobs-dead-letters", {}).get("Dimensions") == on_dlq,
        "the jobs DLQ has alarms (letters received, letters left)",
    )


def verify_client_target(clients: Callable[[str], Any], outputs_json: Path, report: Report) -> None:
    """What demonstration.py reads from ``terraform output -json`` is this stack's.

    moto runs no Lambda code, so the client's API steps cannot run here; its
    target (URL, bucket, API key) is what applies, and it must match what was
    created.
    """
    target = from_outputs(outputs_json)
    api_id = report.outputs["rest_api_id"]
    key = clients("apigateway").get_api_key(apiKey=report.outputs["api_key_id"], includeValue=True)["value"]
    _check(
        report,
        api_id in target.api_url and target.api_url.startswith("https://"),
        f"client target: API URL {target.api_url} is the deployed REST API",
    )
    _check(report, target.bucket == report.outputs["s3_bucket_name"], "client target: the stack's bucket")
    _check(report, target.api_key == key, "client target: sends the deployed API key")


def verify_destroyed(clients: Callable[[str], Any], outputs: dict[str, Any], report: Report) -> None:
    """Check that moto holds nothing of the stack any more."""
    leftovers = {
        "functions": [f["FunctionName"] for f in clients("lambda").list_functions()["Functions"]],
        "file systems": [f["FileSystemId"] for f in clients("efs").describe_file_systems()["FileSystems"]],
        "buckets": [b["Name"] for b in clients("s3").list_buckets()["Buckets"]],
        "rest apis": [a["id"] for a in clients("apigateway").get_rest_apis()["items"]],
        "api keys": [k["id"] for k in clients("apigateway").get_api_keys()["items"]],
        "vpcs": [v["VpcId"] for v in clients("ec2").describe_vpcs()["Vpcs"] if not v.get("IsDefault")],
        "roles": [r["RoleName"] for r in clients("iam").list_roles()["Roles"]],
        "log groups": [g["logGroupName"] for g in clients("logs").describe_log_groups()["logGroups"]],
        "queues": clients("sqs").list_queues().get("QueueUrls", []),
        "alarms": [a["AlarmName"] for a in clients("cloudwatch").describe_alarms()["MetricAlarms"]],
        "dashboards": [d["DashboardName"] for d in clients("cloudwatch").list_dashboards()["DashboardEntries"]],
        "event rules": [r["Name"] for r in clients("events").list_rules()["Rules"]],
        "topics": [t["TopicArn"] for t in clients("sns").list_topics()["Topics"]],
    }
    left = {kind: names for kind, names in leftovers.items() if names}
    _check(report, not left, f"nothing left after destroy{': ' + str(left) if left else ''}")


def fill_and_empty_bucket(
    s3: Any, bucket: str, stack_dir: Path, env: dict[str, str], python: str, report: Report
) -> None:
    """Check the TLS-only policy, then leave versions in the bucket and run ``make destroy``'s emptying step."""
    # moto evaluates bucket policies and serves plain HTTP only, so the
    # TLS-only policy must refuse this write...
    try:
        s3.put_object(Bucket=bucket, Key="outputs/rehearsal.json", Body=b"v0")
    except s3.exceptions.ClientError as error:
        _check(
            report,
            error.response["ResponseMetadata"]["HTTPStatusCode"] == 403,
            "bucket policy refuses requests without TLS",
        )
    else:
        raise RehearsalError("the bucket accepted a write over plain HTTP")
    # ...and must go before the bucket can be filled and emptied here; destroy
    # deletes it next anyway. outputs/ has no event notification, which moto
    # would answer by trying to run the handler.
    s3.delete_bucket_policy(Bucket=bucket)
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket=bucket, Key="outputs/rehearsal.json", Body=body)
    s3.delete_object(Bucket=bucket, Key="outputs/rehearsal.json")
    proc = subprocess.run(
        [python, "-m", "infra.empty_bucket", "--stack", str(stack_dir.resolve())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    _check(
        report,
        proc.returncode == 0 and "deleted 3 object versions" in proc.stdout,
        f"infra/empty_bucket.py deleted every version and delete marker: {proc.stdout.strip()} {proc.stderr[-2000:]}",
    )
    left = s3.get_bucket_notification_configuration(Bucket=bucket)
    _check(
        report,
        not any(left.get(k) for k in ("LambdaFunctionConfigurations", "QueueConfigurations", "TopicConfigurations")),
        "infra/empty_bucket.py switched the bucket notification off",
    )


def rehearse(
    stack_dir: Path, work_dir: Path, python: str = sys.executable, log: Callable[[str], None] = print
) -> Report:
    """Run the whole rehearsal on a copy of ``stack_dir`` in ``work_dir``; raise RehearsalError on any failure."""
    report = Report()
    stack_dir, work_dir = Path(stack_dir).resolve(), Path(work_dir).resolve()
    if work_dir.exists():
        shutil.rmtree(work_dir)
    shutil.copytree(
        stack_dir,
        work_dir,
        ignore=shutil.ignore_patterns(".terraform", "terraform.tfstate*", "terraform.tfvars", "tests"),
    )
    shutil.copy2(HERE / "moto_override.tf", work_dir / "moto_override.tf")
    routes = _expected_routes(stack_dir)

    def step(name: str, args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        log(f"rehearsal: terraform {name}")
        proc = terraform(args, work_dir, env, check=check)
        report.timings[name] = round(time.monotonic() - start, 1)
        return proc

    with moto_server(python, work_dir / "moto.log") as endpoint:
        env = cli_env(work_dir.parent) | {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "TF_VAR_region": REGION,
        }
        env.pop("AWS_PROFILE", None)

        def clients(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        step("init", ["init", "-input=false", "-no-color"], env)
        try:
            step("apply", ["apply", "-auto-approve", "-input=false", "-no-color"], env)
            state = terraform(["state", "list"], work_dir, env).stdout.split()
            report.resources = len([address for address in state if not address.startswith("data.")])
            raw_outputs = terraform(["output", "-json"], work_dir, env).stdout
            report.outputs = {k: v["value"] for k, v in json.loads(raw_outputs).items()}
            verify(clients, report.outputs, routes, report)
            verify_operations(clients, report.outputs, work_dir, report)
            verify_jobs(clients, report.outputs, report)
            (work_dir / "outputs.json").write_text(raw_outputs)
            verify_client_target(clients, work_dir / "outputs.json", report)
            plan = step("plan", ["plan", "-detailed-exitcode", "-input=false", "-no-color"], env, check=False)
            if plan.returncode != 0:
                raise RehearsalError(
                    f"second plan is not empty (exit {plan.returncode}):\n{plan.stdout[-6000:]}\n{plan.stderr[-2000:]}"
                )
            report.checks.append("second plan: no changes")
            fill_and_empty_bucket(clients("s3"), report.outputs["s3_bucket_name"], work_dir, env, python, report)
        finally:
            step("destroy", ["destroy", "-auto-approve", "-input=false", "-no-color"], env)
        verify_destroyed(clients, report.outputs, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line for ``make deploy-local``."""
    parser = argparse.ArgumentParser(description="Rehearse the packaged stack against moto.")
    parser.add_argument("--stack", type=Path, default=Path("build/stacks/dev"))
    parser.add_argument("--work-dir", type=Path, default=Path("build/rehearsal"))
    args = parser.parse_args(argv)
    try:
        report = rehearse(args.stack, args.work_dir)
    except (RehearsalError, RuntimeError) as error:
        print(f"rehearsal FAILED: {error}", file=sys.stderr)
        return 1
    for check in report.checks:
        print(f"  ok  {check}")
    print(f"rehearsal passed: {report.resources} resources; seconds per step:", json.dumps(report.timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
