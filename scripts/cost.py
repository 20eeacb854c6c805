#!/usr/bin/env python3
"""Monthly cost estimate of the stack as it deploys, in the seed README's table format.

    python scripts/cost.py                        # the seed's usage on the stack's defaults
    python scripts/cost.py --throughput-mode bursting --consumer-invocations 200000
    make cost COST_ARGS="--efs-gb 50 --free-tier"

The lines are what the stack's defaults create (infra/): Lambda (the API,
the S3-event function, the hourly sweep), EFS with elastic throughput
(bursting and provisioned are options), S3, API Gateway, CloudWatch Logs
(function logs and the API access log), the EMF custom metrics the code
emits (counted from chalicelib and app.py), the alarms infra/ defines
(counted from infra/monitoring.tf), the access log's KMS key, the
failed-events SQS queue and the S3 gateway endpoint. Unit prices come from
scripts/prices.json only: on-demand list prices of one region and date,
printed under the table. Each line is rounded to the cent as in the seed's
table, and the total is the sum of the rounded lines; ``--json`` also gives
the unrounded amounts.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, get_type_hints

PRICES_PATH = Path(__file__).resolve().with_name("prices.json")
ROOT = Path(__file__).resolve().parents[1]
# EMF metrics (chalicelib/observability.py): inside an HTTP or S3 invocation
# one dimension set {Service, Operation}, so a series is one metric of one
# operation ("<METHOD> <route>" for HTTP, chalicelib/http.py; "s3:ObjectCreated"
# for S3 events, chalicelib/events.py). ColdStart has its own document,
# {Service, Function}: one series per function. Metrics emitted outside an
# invocation (the jobs worker and dead letters, chalicelib/jobs/) carry {Service}
# alone: one series each. Which operations emit which metric: the ingest
# metrics (chalicelib/ingest.py record_ingest) POST /ingest and S3 events;
# the model-cache metrics (chalicelib/inference.py) every route that resolves
# a model, and the jobs worker. tests/unit/test_cost.py checks the names
# against the code's metric calls.
S3_EVENT_OPERATION = "s3:ObjectCreated"
PER_FUNCTION = "<per function>"
SERVICE_ONLY = "<service>"
RESOLVES_A_MODEL = (
    "POST /predict",
    "POST /v2/models/{name}/infer",
    "POST /v2/models/{name}/versions/{version}/infer",
    "GET /v2/models/{name}",
    "GET /v2/models/{name}/versions/{version}",
    SERVICE_ONLY,
)
EMF_METRICS: dict[str, tuple[str, ...]] = {
    "ColdStart": (PER_FUNCTION,),
    "IngestBytes": ("POST /ingest", S3_EVENT_OPERATION),
    "IngestDurationMs": ("POST /ingest", S3_EVENT_OPERATION),
    "ModelCacheHit": RESOLVES_A_MODEL,
    "ModelCacheMiss": RESOLVES_A_MODEL,
    "ModelLoadMs": RESOLVES_A_MODEL,
    "JobRowsDone": (SERVICE_ONLY,),
    "JobBlocksDeadLettered": (SERVICE_ONLY,),
}
# How each alarm resource of infra/monitoring.tf multiplies (its for_each).
ALARM_FOR_EACH = {
    None: lambda functions, s3_functions: 1,
    "local.chalice_function_names": lambda functions, s3_functions: functions,
    "local.async_delivery_alarms": lambda functions, s3_functions: 2 * s3_functions,
}


def operations(app_path: Path = ROOT / "app.py") -> list[str]:
    """The EMF operations of the app: each route's "<METHOD> <path>", and the
    S3 event if there is an S3 handler (the sweep is not an observed invocation)."""
    ops: list[str] = []
    for node in ast.parse(app_path.read_text()).body:
        for dec in getattr(node, "decorator_list", []):
            if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)):
                continue
            if dec.func.attr == "route":
                path = ast.literal_eval(dec.args[0])
                methods = next((ast.literal_eval(k.value) for k in dec.keywords if k.arg == "methods"), ["GET"])
                ops += [f"{m} {path}" for m in methods]
            elif dec.func.attr == "on_s3_event" and S3_EVENT_OPERATION not in ops:
                ops.append(S3_EVENT_OPERATION)
    return ops


def metric_series(ops: list[str], function_count: int | None = None) -> int:
    """Custom metric series: each metric times the operations (or functions) that emit it."""
    if function_count is None:
        function_count = functions()[0]
    per = {PER_FUNCTION: function_count, SERVICE_ONLY: 1}
    return sum(per.get(e, 1 if e in ops else 0) for emitters in EMF_METRICS.values() for e in emitters)


def functions(app_path: Path = ROOT / "app.py") -> tuple[int, int]:
    """(Lambda functions, S3-event functions) Chalice packages from app.py:
    one for all routes, one per event handler."""
    kinds = [
        dec.func.attr
        for node in ast.parse(app_path.read_text()).body
        for dec in getattr(node, "decorator_list", [])
        if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
    ]
    handlers = [k for k in kinds if k in ("on_s3_event", "schedule", "on_sqs_message", "lambda_function")]
    return (1 if "route" in kinds else 0) + len(handlers), kinds.count("on_s3_event")


def alarms(monitoring_tf: Path | None = None, app_path: Path = ROOT / "app.py") -> int:
    """The CloudWatch alarms the stack defines (every ``infra/*.tf``, or the one
    file given), for the app's functions."""
    n_functions, n_s3 = functions(app_path)
    paths = [monitoring_tf] if monitoring_tf is not None else sorted((ROOT / "infra").glob("*.tf"))
    text = "\n".join(p.read_text() for p in paths)
    total = 0
    for match in re.finditer(r'^resource "aws_cloudwatch_metric_alarm" "(\w+)" \{\n(.*?)^\}', text, re.M | re.S):
        for_each = re.search(r"^\s*for_each\s*=\s*(\S+)", match.group(2), re.M)
        key = for_each.group(1) if for_each else None
        if key not in ALARM_FOR_EACH:
            raise ValueError(f"alarm {match.group(1)}: teach scripts/cost.py how for_each = {key} multiplies")
        total += ALARM_FOR_EACH[key](n_functions, n_s3)
    return total


THROUGHPUT_MODES = ("bursting", "elastic", "provisioned")
GIB_PER_GB = 1.0  # AWS bills storage in GB-months; the seed does not distinguish GB and GiB


def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    """The unit prices (see prices.json for their source and date)."""
    return json.loads(path.read_text())


def _opt(default: Any, help: str) -> Any:
    """A Usage field with its command-line help (``make cost COST_ARGS=--help``)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Usage:
    """One month of usage. Defaults are the seed's 'typical POC usage'.

    Each field is one option of the command line (``--efs-gb`` for ``efs_gb``).
    """

    producer_invocations: int = _opt(1000, "ingest calls (POST /ingest and S3 events) per month")
    producer_duration_s: float = _opt(2.0, "average seconds per ingest invocation")
    producer_memory_mb: int = _opt(1024, "memory of the ingest function in MB")
    consumer_invocations: int = _opt(5000, "predictions (POST /predict) per month")
    consumer_duration_s: float = _opt(2.0, "average seconds per prediction")
    consumer_memory_mb: int = _opt(2048, "memory of the predict function in MB")
    api_requests: int | None = _opt(None, "API Gateway requests per month (default: all invocations)")
    sweep_invocations: int = _opt(730, "runs of the hourly debris sweep per month")
    sweep_duration_s: float = _opt(1.0, "average seconds per sweep")
    sweep_memory_mb: int = _opt(512, "memory of the sweep function in MB")
    efs_gb: float = _opt(10.0, "EFS Standard GB stored")
    # The stack's default (infra/variables.tf efs_throughput_mode).
    throughput_mode: str = _opt("elastic", "EFS throughput mode")
    # Assumed: each ingest writes its object once (1,000 x ~10 MB), and cold
    # model loads read the stored set about twice a month.
    efs_read_gb: float = _opt(20.0, "elastic mode: GB read per month")
    efs_write_gb: float = _opt(10.0, "elastic mode: GB written per month")
    provisioned_mibps: float = _opt(0.0, "provisioned mode: MiB/s provisioned")
    s3_gb: float = _opt(20.0, "S3 Standard GB stored")
    # The seed prices its '~6000 PUT/GET' at the PUT rate ($0.03).
    s3_put_requests: int = _opt(6000, "S3 PUT/COPY/POST/LIST requests per month")
    s3_get_requests: int = _opt(0, "S3 GET requests per month")
    log_gb: float = _opt(1.0, "CloudWatch Logs GB ingested per month (function logs and EMF)")
    access_log_kb_per_request: float = _opt(0.5, "API access log KB per request (one JSON line)")
    access_log_retention_days: int = _opt(365, "API access log retention (infra: api_access_log_retention_days)")
    metric_series: int | None = _opt(None, "EMF custom metric series (default: counted from the code)")
    alarm_count: int | None = _opt(None, "CloudWatch alarms (default: counted from infra/monitoring.tf)")
    failed_events: int = _opt(0, "S3 events that land in the failed-events queue per month")
    log_gb: float = _opt(1.0, "CloudWatch Logs GB ingested per month")
    sqs_requests: int = _opt(
        0, "batch jobs: SQS requests per month (each block's message is sent, received and deleted: ~3 per block)"
    )
    sqs_endpoint_azs: int = _opt(
        2, "batch jobs: AZs of the SQS interface endpoint the stack deploys (its az_count, 2 by default; 0: none)"
    )
    free_tier: bool = _opt(False, "deduct the monthly free-tier allowances")

    @property
    def invocations(self) -> int:
        return self.producer_invocations + self.consumer_invocations

    @property
    def requests(self) -> int:
        return self.api_requests if self.api_requests is not None else self.invocations


@dataclass(frozen=True)
class Line:
    """One row of the cost table."""

    service: str
    usage: str
    unit_cost: str
    amount: float
    free_tier: str

    @property
    def rounded(self) -> Decimal:
        return Decimal(str(self.amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _money(v: float) -> str:
    return f"${v:g}" if v >= 0.01 else f"${v:.10f}".rstrip("0")


def _count(n: float) -> str:
    return f"{n:,.0f}"


def estimate(u: Usage, prices: dict[str, Any]) -> list[Line]:
    """The cost lines for ``u``; free-tier allowances are deducted only if ``u.free_tier``."""
    if u.throughput_mode not in THROUGHPUT_MODES:
        raise ValueError(f"throughput mode must be one of {', '.join(THROUGHPUT_MODES)}")
    ft = prices["free_tier"]

    def allowance(key: str) -> float:
        return ft[key] if u.free_tier else 0

    gb_s_producer = u.producer_invocations * u.producer_duration_s * u.producer_memory_mb / 1024
    gb_s_consumer = u.consumer_invocations * u.consumer_duration_s * u.consumer_memory_mb / 1024
    # The free GB-seconds cover the producer first, then the consumer.
    free_gb_s = allowance("lambda_gb_seconds")
    billed_producer = max(0.0, gb_s_producer - free_gb_s)
    billed_consumer = max(0.0, gb_s_consumer - max(0.0, free_gb_s - gb_s_producer))
    gbs = prices["lambda_gb_second"]
    lines = [
        Line(
            "Lambda (Producer)",
            f"{_count(u.producer_invocations)} invocations x {u.producer_duration_s:g}s x {u.producer_memory_mb}MB",
            f"{_money(gbs)}/GB-second",
            billed_producer * gbs,
            f"{_count(ft['lambda_requests'])} requests + {_count(ft['lambda_gb_seconds'])} GB-seconds/month",
        ),
        Line(
            "Lambda (Consumer)",
            f"{_count(u.consumer_invocations)} invocations x {u.consumer_duration_s:g}s x {u.consumer_memory_mb}MB",
            f"{_money(gbs)}/GB-second",
            billed_consumer * gbs,
            "same allowance",
        ),
        Line(
            "Lambda Requests",
            f"{_count(u.invocations)} requests",
            f"${prices['lambda_requests_per_million']:.2f}/1M requests",
            max(0, u.invocations - allowance("lambda_requests")) * prices["lambda_requests_per_million"] / 1e6,
            "same allowance",
        ),
        Line(
            "EFS Storage",
            f"{u.efs_gb:g} GB",
            f"${prices['efs_standard_gb_month']:.2f}/GB-month",
            u.efs_gb * prices["efs_standard_gb_month"],
            "No free tier",
        ),
    ]
    lines.append(_efs_throughput(u, prices))
    lines += [
        Line(
            "S3 Storage",
            f"{u.s3_gb:g} GB",
            f"${prices['s3_standard_gb_month']}/GB-month",
            max(0.0, u.s3_gb - allowance("s3_gb")) * prices["s3_standard_gb_month"],
            f"{ft['s3_gb']} GB free",
        ),
        Line(
            "S3 Requests",
            f"{_count(u.s3_put_requests)} PUT, {_count(u.s3_get_requests)} GET",
            f"${prices['s3_put_per_1000']}/1000 PUT, ${prices['s3_get_per_1000']}/1000 GET",
            max(0, u.s3_put_requests - allowance("s3_put_requests")) * prices["s3_put_per_1000"] / 1000
            + max(0, u.s3_get_requests - allowance("s3_get_requests")) * prices["s3_get_per_1000"] / 1000,
            f"{_count(ft['s3_get_requests'])} GET, {_count(ft['s3_put_requests'])} PUT free",
        ),
        Line(
            "API Gateway",
            f"{_count(u.requests)} requests",
            f"${prices['api_gateway_rest_per_million']:.2f}/1M requests",
            max(0, u.requests - allowance("api_gateway_requests")) * prices["api_gateway_rest_per_million"] / 1e6,
            f"{_count(ft['api_gateway_requests'])} requests/month (first 12 months)",
        ),
        Line(
            "CloudWatch Logs",
            f"{u.log_gb:g} GB",
            f"${prices['cloudwatch_logs_ingest_per_gb']:.2f}/GB",
            max(0.0, u.log_gb - allowance("cloudwatch_logs_gb")) * prices["cloudwatch_logs_ingest_per_gb"],
            f"{ft['cloudwatch_logs_gb']} GB ingestion free",
        ),
    ]
    lines += _stack_lines(u, prices, allowance)
    lines.append(
        Line("VPC (S3 Endpoint)", "1 gateway endpoint", "Free", prices["vpc_s3_gateway_endpoint_month"], "Always free")
    )
    # Batch jobs (infra/jobs.tf): listed when the usage has them.
    if u.sqs_requests:
        lines.append(
            Line(
                "SQS Requests",
                f"{_count(u.sqs_requests)} requests",
                f"${prices['sqs_requests_per_million']:.2f}/1M requests",
                max(0, u.sqs_requests - allowance("sqs_requests")) * prices["sqs_requests_per_million"] / 1e6,
                f"{_count(ft['sqs_requests'])} requests/month",
            )
        )
    if u.sqs_endpoint_azs:
        hours = prices["hours_per_month"]
        lines.append(
            Line(
                "VPC (SQS Endpoint)",
                f"1 interface endpoint x {u.sqs_endpoint_azs} AZ x {hours} h",
                f"${prices['vpc_interface_endpoint_az_hour']}/AZ-hour",
                u.sqs_endpoint_azs * hours * prices["vpc_interface_endpoint_az_hour"],
                "No free tier",
            )
        )
    return lines


def _stack_lines(u: Usage, prices: dict[str, Any], allowance: Callable[[str], float]) -> list[Line]:
    """What the stack adds beyond the seed's table: the sweep, the access log,
    custom metrics, alarms, the log key, the failed-events queue, the dashboard."""
    ft = prices["free_tier"]
    series = u.metric_series if u.metric_series is not None else metric_series(operations())
    n_alarms = u.alarm_count if u.alarm_count is not None else alarms()
    gbs = prices["lambda_gb_second"]
    sweep_gb_s = u.sweep_invocations * u.sweep_duration_s * u.sweep_memory_mb / 1024
    # The Lambda allowance left after the producer and consumer (estimate's order).
    used_gb_s = (
        u.producer_invocations * u.producer_duration_s * u.producer_memory_mb
        + u.consumer_invocations * u.consumer_duration_s * u.consumer_memory_mb
    ) / 1024
    free_gb_s = max(0.0, allowance("lambda_gb_seconds") - used_gb_s)
    free_requests = max(0.0, allowance("lambda_requests") - u.invocations)
    access_gb = u.requests * u.access_log_kb_per_request / 1024**2
    # Steady state: the retention window holds that many months of the log.
    stored_gb = access_gb * u.access_log_retention_days / 30
    sqs_requests = u.failed_events  # Lambda's SendMessage; nothing polls the queue until a replay
    return [
        Line(
            "Lambda (sweep)",
            f"{_count(u.sweep_invocations)} runs x {u.sweep_duration_s:g}s x {u.sweep_memory_mb}MB",
            f"{_money(gbs)}/GB-second + requests",
            max(0.0, sweep_gb_s - free_gb_s) * gbs
            + max(0.0, u.sweep_invocations - free_requests) * prices["lambda_requests_per_million"] / 1e6,
            "same allowance",
        ),
        Line(
            "API Access Logs",
            f"{access_gb:.4f} GB/month, {stored_gb:.3f} GB kept {u.access_log_retention_days} days",
            f"${prices['cloudwatch_logs_ingest_per_gb']:.2f}/GB"
            f" + ${prices['cloudwatch_logs_storage_gb_month']}/GB-month",
            access_gb * prices["cloudwatch_logs_ingest_per_gb"]
            + stored_gb * prices["cloudwatch_logs_storage_gb_month"],
            "shares the Logs allowance",
        ),
        Line(
            "KMS Key (access log)",
            "1 customer-managed key",
            f"${prices['kms_key_month']:.2f}/key-month",
            prices["kms_key_month"],
            "No free tier",
        ),
        Line(
            "CloudWatch Metrics (EMF)",
            f"{series} custom metric series",
            f"${prices['cloudwatch_metric_month']:.2f}/metric-month",
            max(0, series - allowance("cloudwatch_metrics")) * prices["cloudwatch_metric_month"],
            f"{ft['cloudwatch_metrics']} metrics free",
        ),
        Line(
            "CloudWatch Alarms",
            f"{n_alarms} standard alarms",
            f"${prices['cloudwatch_alarm_month']:.2f}/alarm-month",
            max(0, n_alarms - allowance("cloudwatch_alarms")) * prices["cloudwatch_alarm_month"],
            f"{ft['cloudwatch_alarms']} alarms free",
        ),
        Line(
            "CloudWatch Dashboard",
            "1 dashboard",
            f"${prices['cloudwatch_dashboard_month']:.2f}/dashboard-month beyond 3",
            0.0,
            "first 3 per account free",
        ),
        Line(
            "SQS (failed events)",
            f"{_count(sqs_requests)} requests",
            f"${prices['sqs_requests_per_million']:.2f}/1M requests",
            max(0, sqs_requests - allowance("sqs_requests")) * prices["sqs_requests_per_million"] / 1e6,
            f"{_count(ft['sqs_requests'])} requests free",
        ),
    ]


def bursting_baseline_mibps(efs_gb: float, prices: dict[str, Any]) -> float:
    """Throughput a bursting file system sustains once its credits are spent."""
    return efs_gb * GIB_PER_GB * prices["efs_bursting_baseline_kibps_per_gib"] / 1024


def _efs_throughput(u: Usage, prices: dict[str, Any]) -> Line:
    if u.throughput_mode == "bursting":
        return Line(
            "EFS Throughput (bursting)",
            f"baseline {bursting_baseline_mibps(u.efs_gb, prices):.2f} MiB/s",
            "Included in storage",
            0.0,
            "N/A",
        )
    if u.throughput_mode == "elastic":
        amount = u.efs_read_gb * prices["efs_elastic_read_per_gb"] + u.efs_write_gb * prices["efs_elastic_write_per_gb"]
        return Line(
            "EFS Throughput (elastic)",
            f"{u.efs_read_gb:g} GB read, {u.efs_write_gb:g} GB written",
            f"${prices['efs_elastic_read_per_gb']}/GB read, ${prices['efs_elastic_write_per_gb']}/GB written",
            amount,
            "No free tier",
        )
    # Provisioned: billed only above the baseline the stored data earns.
    billable = max(0.0, u.provisioned_mibps - bursting_baseline_mibps(u.efs_gb, prices))
    return Line(
        "EFS Throughput (provisioned)",
        f"{u.provisioned_mibps:g} MiB/s ({billable:.2f} above baseline)",
        f"${prices['efs_provisioned_mibps_month']:.2f}/MiB/s-month",
        billable * prices["efs_provisioned_mibps_month"],
        "No free tier",
    )


PRICE_NOTE = "{region} list, {date}"


def total(lines: list[Line]) -> Decimal:
    """The seed's total: the sum of the lines as rounded in the table."""
    return sum((line.rounded for line in lines), Decimal("0.00"))


def render(lines: list[Line], u: Usage) -> str:
    """The seed's markdown table for these lines."""
    rows = [("Service", "Usage", "Unit Cost", "Monthly Cost", "Free Tier"), ("---",) * 5]
    rows += [(f"**{l.service}**", l.usage, l.unit_cost, f"${l.rounded}", l.free_tier) for l in lines]
    rows.append(("", "", "**Total**", f"**~${total(lines)}/month**", "applied" if u.free_tier else "not applied"))
    rows.append(("", "", "Prices", PRICE_NOTE.format(**load_prices()["_as_of"]), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = []
    for r in rows:
        if r[0] == "---":
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        else:
            out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one option per Usage field, each with its help and default."""
    p = argparse.ArgumentParser(prog="make cost COST_ARGS=...", description=__doc__.splitlines()[0])
    hints = get_type_hints(Usage)
    for f in fields(Usage):
        flag, help = "--" + f.name.replace("_", "-"), f.metadata["help"]
        kind = hints[f.name]
        if kind is bool:
            p.add_argument(flag, action="store_true", help=help)
            continue
        if f.default is not None:
            help += " (default: %(default)s)"
        if f.name == "throughput_mode":
            p.add_argument(flag, choices=THROUGHPUT_MODES, default=f.default, help=help)
        else:
            p.add_argument(flag, type=int if kind in (int, int | None) else float, default=f.default, help=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def parse_args(argv: list[str] | None) -> tuple[Usage, bool]:
    p = build_parser()
    a = p.parse_args(argv)
    numbers = [v for k, v in vars(a).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if any(v < 0 for v in numbers):
        p.error("usage figures must be >= 0")
    usage = Usage(**{k: v for k, v in vars(a).items() if k != "json"})
    return usage, a.json


def main(argv: list[str] | None = None) -> int:
    """Print the cost table (or JSON) for the usage on the command line."""
    usage, as_json = parse_args(argv)
    prices = load_prices()
    lines = estimate(usage, prices)
    if as_json:
        print(
            json.dumps(
                {
                    "usage": asdict(usage),
                    "lines": [{**asdict(l), "rounded": float(l.rounded)} for l in lines],
                    "total": float(total(lines)),
                    "unrounded_total": round(sum(l.amount for l in lines), 6),
                },
                indent=2,
            )
        )
        return 0
    print(render(lines, usage))
    if usage.throughput_mode == "bursting":
        print(
            f"\nBursting EFS sustains {bursting_baseline_mibps(usage.efs_gb, prices):.2f} MiB/s for "
            f"{usage.efs_gb:g} GB stored once burst credits are spent; loading large models "
            "often needs --throughput-mode elastic."
        )
    as_of = prices["_as_of"]
    print(
        f"Unit prices: on-demand list prices of {as_of['region']} as published {as_of['date']} "
        f"({PRICES_PATH.name}, {as_of['checked']}); unrounded total ${sum(l.amount for l in lines):.4f}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
