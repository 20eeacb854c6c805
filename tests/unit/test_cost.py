"""scripts/cost.py: the seed's own cost table (000_*.txt, 'Cost Estimation')
for the lines it had, and the stack as it deploys for the rest."""

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from scripts import cost

ROOT = Path(__file__).resolve().parents[2]

PRICES = cost.load_prices()
# The seed's table: service -> monthly cost, for its stated usage.
SEED_TABLE = {
    "Lambda (Producer)": "0.03",
    "Lambda (Consumer)": "0.33",
    "Lambda Requests": "0.00",
    "EFS Storage": "3.00",
    "EFS Throughput (bursting)": "0.00",  # the seed's "EFS Requests: included in storage"
    "S3 Storage": "0.46",
    "S3 Requests": "0.03",
    "API Gateway": "0.02",
    "CloudWatch Logs": "0.50",
    "VPC (S3 Endpoint)": "0.00",
}
# What the stack deploys beyond the seed's table, at the seed's usage.
STACK_LINES = {
    "Lambda (sweep)": "0.01",
    "API Access Logs": "0.00",
    "KMS Key (access log)": "1.00",
    "CloudWatch Metrics (EMF)": "8.70",  # 29 series
    "CloudWatch Alarms": "1.70",  # 17 alarms
    "CloudWatch Dashboard": "0.00",
    "SQS (failed events)": "0.00",
    "VPC (SQS Endpoint)": "14.60",  # the jobs queue's interface endpoint, 2 AZs
}


def seed_usage(**overrides):
    """The seed's usage, spelled out rather than taken from the defaults."""
    values = dict(
        producer_invocations=1000,
        producer_duration_s=2,
        producer_memory_mb=1024,
        consumer_invocations=5000,
        consumer_duration_s=2,
        consumer_memory_mb=2048,
        efs_gb=10,
        s3_gb=20,
        s3_put_requests=6000,
        s3_get_requests=0,
        log_gb=1,
        throughput_mode="bursting",
    )
    values.update(overrides)
    return cost.Usage(**values)


def test_seed_usage_reproduces_every_seed_line_and_adds_what_the_stack_deploys():
    lines = {l.service: str(l.rounded) for l in cost.estimate(seed_usage(), PRICES)}
    assert {k: v for k, v in lines.items() if k in SEED_TABLE} == SEED_TABLE
    assert {k: v for k, v in lines.items() if k not in SEED_TABLE} == STACK_LINES
    # The seed's $4.37 plus the stack's own lines.
    assert cost.total(cost.estimate(seed_usage(), PRICES)) == Decimal("4.37") + Decimal("26.01")


def test_defaults_price_the_stack_as_it_deploys():
    """Elastic throughput (the stack's default), the metrics and the alarms:
    the seed's usage on what deploys lands in the review's $7-21/month, plus
    the $14.60 of the batch jobs' SQS interface endpoint (2 AZs)."""
    lines = {l.service: l for l in cost.estimate(cost.Usage(), PRICES)}
    assert "EFS Throughput (elastic)" in lines and "EFS Throughput (bursting)" not in lines
    assert lines["EFS Throughput (elastic)"].amount == pytest.approx(20 * 0.03 + 10 * 0.06)
    assert lines["CloudWatch Metrics (EMF)"].usage == f"{cost.metric_series(cost.operations())} custom metric series"
    assert lines["CloudWatch Alarms"].usage == f"{cost.alarms()} standard alarms"
    total = cost.total(list(lines.values()))
    assert Decimal("7") + Decimal("14.60") <= total <= Decimal("21") + Decimal("14.60"), total
    bursting = cost.total(cost.estimate(cost.Usage(throughput_mode="bursting"), PRICES))
    assert bursting == total - Decimal("1.20")  # the option: no per-GB throughput charge


def test_the_emf_metric_table_names_exactly_the_metrics_the_code_emits():
    emitted = set()
    for path in [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name == "metric" and isinstance(node.args[0].value, str):
                    emitted.add(node.args[0].value)
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "emf_document" and node.args:
                first = node.args[0]  # a document written directly (ColdStart, by function)
                if isinstance(first, ast.Dict):
                    emitted |= {k.value for k in first.keys if isinstance(k, ast.Constant)}
    assert emitted and emitted == set(cost.EMF_METRICS), emitted ^ set(cost.EMF_METRICS)
    ops = cost.operations()
    for emitters in cost.EMF_METRICS.values():
        assert set(emitters) - {cost.PER_FUNCTION, cost.SERVICE_ONLY} <= set(ops), (emitters, ops)


def test_series_and_alarms_are_counted_from_the_app_and_infra():
    ops = cost.operations()
    assert {"POST /ingest", "POST /predict", "DELETE /models/{name}", "GET /health", "s3:ObjectCreated"} <= set(ops)
    # ColdStart per function; two ingest metrics for two operations; three model-cache
    # metrics for five routes that resolve a model and the jobs worker; JobRowsDone, JobBlocksDeadLettered.
    assert cost.metric_series(ops) == 5 + 2 * 2 + 3 * 6 + 2
    # api_handler, on_object_created, reclaim_debris, run_job_blocks, fail_dead_blocks
    assert cost.functions() == (5, 1)
    # failed-events, api-5xx, api-latency; errors and throttles per function; two delivery alarms.
    assert cost.alarms() == 3 + 2 * 5 + 2 + 2  # and the jobs DLQ's two (infra/jobs.tf)


def test_an_alarm_the_counter_does_not_know_is_refused(tmp_path):
    tf = tmp_path / "monitoring.tf"
    tf.write_text('resource "aws_cloudwatch_metric_alarm" "x" {\n  for_each = toset(var.names)\n}\n')
    with pytest.raises(ValueError, match="teach scripts/cost.py"):
        cost.alarms(tf)


def test_the_table_says_which_region_and_date_its_prices_are():
    table = cost.render(cost.estimate(cost.Usage(), PRICES), cost.Usage())
    as_of = PRICES["_as_of"]
    assert as_of["region"] == "us-east-1" and as_of["date"]
    assert "| Prices " in table and f"{as_of['region']} list, {as_of['date']}" in table


def test_lambda_cost_is_gb_seconds_times_price():
    lines = {l.service: l for l in cost.estimate(seed_usage(consumer_invocations=100_000), PRICES)}
    # 100k x 2 s x 2 GB = 400k GB-s
    assert lines["Lambda (Consumer)"].amount == pytest.approx(400_000 * 0.0000166667)
    assert lines["Lambda Requests"].amount == pytest.approx(101_000 * 0.20 / 1e6)


def test_free_tier_deducts_allowances_but_not_efs():
    lines = {l.service: l for l in cost.estimate(seed_usage(free_tier=True), PRICES)}
    assert lines["Lambda (Producer)"].amount == 0 and lines["Lambda (Consumer)"].amount == 0
    assert lines["EFS Storage"].amount == pytest.approx(3.00)
    assert lines["S3 Storage"].amount == pytest.approx(15 * 0.023)
    assert lines["S3 Requests"].amount == pytest.approx(4000 * 0.005 / 1000)
    assert lines["CloudWatch Logs"].amount == 0
    assert lines["CloudWatch Metrics (EMF)"].amount == pytest.approx(19 * 0.30)  # 29 series, 10 free
    assert lines["CloudWatch Alarms"].amount == pytest.approx(7 * 0.10)  # 17 alarms, 10 free
    assert lines["Lambda (sweep)"].amount == 0 and lines["KMS Key (access log)"].amount == 1.00
    assert cost.total(list(lines.values())) == Decimal("3.37") + Decimal(
        "22.00"
    )  # metrics, alarms, the key, the SQS endpoint


def test_free_gb_seconds_cover_the_producer_first():
    # 300k GB-s producer + 300k GB-s consumer against a 400k allowance: 200k billed, all consumer.
    u = seed_usage(
        producer_invocations=150_000,
        producer_duration_s=2,
        producer_memory_mb=1024,
        consumer_invocations=75_000,
        consumer_duration_s=2,
        consumer_memory_mb=2048,
        free_tier=True,
    )
    lines = {l.service: l for l in cost.estimate(u, PRICES)}
    assert lines["Lambda (Producer)"].amount == 0
    assert lines["Lambda (Consumer)"].amount == pytest.approx(200_000 * 0.0000166667)


def test_elastic_throughput_bills_reads_and_writes():
    lines = {
        l.service: l
        for l in cost.estimate(seed_usage(throughput_mode="elastic", efs_read_gb=100, efs_write_gb=10), PRICES)
    }
    assert lines["EFS Throughput (elastic)"].amount == pytest.approx(100 * 0.03 + 10 * 0.06)


def test_provisioned_throughput_bills_only_above_the_storage_baseline():
    # 10 GB stored earn 500 KiB/s of baseline.
    lines = {
        l.service: l for l in cost.estimate(seed_usage(throughput_mode="provisioned", provisioned_mibps=10), PRICES)
    }
    assert lines["EFS Throughput (provisioned)"].amount == pytest.approx((10 - 500 / 1024) * 6.00)
    below = cost.estimate(seed_usage(throughput_mode="provisioned", provisioned_mibps=0.25), PRICES)
    assert {l.service: l.amount for l in below}["EFS Throughput (provisioned)"] == 0


def test_unknown_throughput_mode_is_refused():
    with pytest.raises(ValueError):
        cost.estimate(seed_usage(throughput_mode="turbo"), PRICES)


def test_cli_prints_the_table(capsys):
    assert cost.main(["--throughput-mode", "bursting"]) == 0
    out = capsys.readouterr().out
    assert "**~$30.38/month**" in out
    assert "| **EFS Storage**" in out and "$3.00" in out
    assert "us-east-1" in out


def test_cli_rejects_negative_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        cost.main(["--efs-gb", "-1"])
    assert exc.value.code == 2


def test_every_price_has_a_documented_source():
    assert PRICES["_source"] and PRICES["_updated"]
    numeric = {k: v for k, v in PRICES.items() if not k.startswith("_") and k != "free_tier"}
    assert all(isinstance(v, (int, float)) and v >= 0 for v in numeric.values())


def test_every_option_has_a_help_text_and_every_usage_field_an_option():
    from dataclasses import fields

    parser = cost.build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings} has no help text"
    dests = {a.dest for a in parser._actions}
    assert {f.name for f in fields(cost.Usage)} <= dests


def test_batch_jobs_add_sqs_requests_and_the_interface_endpoint():
    lines = {l.service: l for l in cost.estimate(seed_usage(sqs_requests=3_000_000, sqs_endpoint_azs=2), PRICES)}
    # 3M requests, the first 1M free only with --free-tier; 2 AZs x 730 h x $0.01.
    assert lines["SQS Requests"].amount == pytest.approx(3_000_000 * 0.40 / 1e6)
    assert str(lines["VPC (SQS Endpoint)"].rounded) == "14.60"
    free = {l.service: l for l in cost.estimate(seed_usage(sqs_requests=3_000_000, free_tier=True), PRICES)}
    assert free["SQS Requests"].amount == pytest.approx(2_000_000 * 0.40 / 1e6)
    assert str(free["VPC (SQS Endpoint)"].rounded) == "14.60"  # deployed by default, no free tier
    assert "VPC (SQS Endpoint)" not in {l.service for l in cost.estimate(seed_usage(sqs_endpoint_azs=0), PRICES)}
