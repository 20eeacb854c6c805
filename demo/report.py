"""demonstration_results.json and demonstration_summary.txt."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from demo.workflow import FAIL, NOT_APPLICABLE, PASS, SKIPPED, Demonstration, StepResult


def percentile(values: Iterable[float], p: float) -> float | None:
    """Nearest-rank percentile (``p`` in 0..100); ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50": _round(percentile(values, 50)),
        "p95": _round(percentile(values, 95)),
        "max": _round(max(values) if values else None),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def counts(steps: list[StepResult]) -> dict[str, int]:
    """How many steps ended in each result."""
    return {r: sum(1 for s in steps if s.result == r) for r in (PASS, FAIL, SKIPPED, NOT_APPLICABLE)}


def summarize(demo: Demonstration) -> dict[str, Any]:
    """Latency percentiles, cold vs warm predict, transfer and ingest throughput."""
    predicts = [s for s in demo.steps if s.category == "predict" and s.result == PASS]
    # The service says whether the model came from the warm cache; on a deployed
    # stack a "warm" call may land on a fresh container and say miss.
    cold = [s for s in predicts if s.metrics.get("cache") == "miss"]
    warm = [s for s in predicts if s.metrics.get("cache") == "hit"]
    throughput: dict[str, Any] = {}
    for s in demo.steps:
        if s.result != PASS or not s.latencyMs or "bytes" not in s.metrics:
            continue
        mibps = s.metrics["bytes"] / 1048576 / (s.latencyMs / 1000)
        if s.name.startswith("uploads: PUT"):
            throughput["presignedPutMiBps"] = round(mibps, 2)
        elif s.category == "event":
            throughput["s3EventIngestMiBps"] = round(mibps, 2)
            throughput["s3EventLandMs"] = round(s.latencyMs, 1)
        elif s.name == "ingest by S3 key" and s.metrics.get("ingestStatus") == "created":
            throughput["ingestByKeyMiBps"] = round(mibps, 2)
        elif s.name == "ingest by S3 key":
            throughput["ingestByKeyNote"] = "the bucket's S3 event ingested the object first ('exists')"
    first = demo.api_latencies[0] if demo.api_latencies else None
    return {
        "apiLatencyMs": _stats(demo.api_latencies),
        "firstRequestMs": _round(first),
        "predictColdMs": _stats([s.latencyMs for s in cold]),
        "predictWarmMs": _stats([s.latencyMs for s in warm]),
        "predictColdServerMs": _stats([s.metrics["serverMs"] for s in cold]),
        "predictWarmServerMs": _stats([s.metrics["serverMs"] for s in warm]),
        "throughput": throughput,
    }


def results_document(demo: Demonstration, started: str, finished: str) -> dict[str, Any]:
    """The whole run as one JSON document."""
    c = counts(demo.steps)
    return {
        "target": {
            "label": demo.target.label,
            "apiUrl": demo.target.api_url,
            "bucket": demo.target.bucket,
            "apiKey": bool(demo.target.api_key),
        },
        "runId": demo.run_id,
        "started": started,
        "finished": finished,
        "passed": c[FAIL] == 0,
        "counts": c,
        "summary": summarize(demo),
        "steps": [s.to_dict() for s in demo.steps],
    }


def summary_text(doc: dict[str, Any]) -> str:
    """The human summary (demonstration_summary.txt)."""
    s, c = doc["summary"], doc["counts"]

    def ms(stats: dict[str, Any]) -> str:
        if not stats["count"]:
            return "no samples"
        return f"p50 {stats['p50']:.1f} ms, p95 {stats['p95']:.1f} ms (n={stats['count']})"

    lines = [
        f"Demonstration {'PASSED' if doc['passed'] else 'FAILED'} against {doc['target']['label']} "
        f"({doc['target']['apiUrl']})",
        f"Run {doc['runId']}, {doc['started']} -> {doc['finished']}",
        f"Steps: {c[PASS]} passed, {c[FAIL]} failed, {c[SKIPPED]} skipped, {c[NOT_APPLICABLE]} not applicable",
        "",
        f"API latency (all calls):   {ms(s['apiLatencyMs'])}",
        f"First request:             {s['firstRequestMs']} ms (includes any Lambda cold start)",
        f"Predict, cold model:       {ms(s['predictColdMs'])}; server {ms(s['predictColdServerMs'])}",
        f"Predict, warm model:       {ms(s['predictWarmMs'])}; server {ms(s['predictWarmServerMs'])}",
    ]
    t = s["throughput"]
    if "presignedPutMiBps" in t:
        lines.append(f"Presigned PUT to S3:       {t['presignedPutMiBps']} MiB/s")
    if "s3EventIngestMiBps" in t:
        lines.append(
            f"S3 event ingest:           landed {t['s3EventLandMs']} ms after the PUT "
            f"({t['s3EventIngestMiBps']} MiB/s, including event delivery and polling)"
        )
    if "ingestByKeyMiBps" in t:
        lines.append(f"POST /ingest by key:       {t['ingestByKeyMiBps']} MiB/s")
    elif "ingestByKeyNote" in t:
        lines.append(f"POST /ingest by key:       {t['ingestByKeyNote']}")
    failed = [st for st in doc["steps"] if st["result"] == FAIL]
    if failed:
        lines += ["", "Failures:"] + [f"  - {st['name']}: {st['detail']}" for st in failed]
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], results_path: Path, summary_path: Path) -> str:
    """Write both files; returns the summary text."""
    results_path.write_text(json.dumps(doc, indent=2) + "\n")
    text = summary_text(doc)
    summary_path.write_text(text)
    return text
