"""scripts/cost.py against the seed's own cost table (000_*.txt, 'Cost Estimation')."""

from decimal import Decimal

import pytest

from scripts import cost

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


def test_seed_usage_reproduces_every_line_and_the_total():
    lines = cost.estimate(seed_usage(), PRICES)
    assert {l.service: str(l.rounded) for l in lines} == SEED_TABLE
    assert cost.total(lines) == Decimal("4.37")


def test_defaults_are_the_seed_usage():
    assert cost.estimate(cost.Usage(), PRICES) == cost.estimate(seed_usage(), PRICES)


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
    assert cost.total(list(lines.values())) == Decimal("3.37")


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


def test_cli_prints_the_seed_table(capsys):
    assert cost.main([]) == 0
    out = capsys.readouterr().out
    assert "**~$4.37/month**" in out
    assert "| **EFS Storage**" in out and "$3.00" in out


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
    assert "VPC (SQS Endpoint)" not in free  # not asked for: the seed's table stays as it was
    assert cost.total(cost.estimate(seed_usage(sqs_endpoint_azs=2), PRICES)) == Decimal("18.97")
