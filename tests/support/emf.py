"""Parsing the service's stdout: JSON log lines and EMF documents, checked against the EMF spec."""

import json


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def emf_docs(text):
    return [d for d in json_lines(text) if "_aws" in d]


def invocation_docs(text):
    """The EMF documents of invocations' own metrics: without the process's
    cold-start document (``ColdStart`` alone, dimensioned by function)."""
    return [d for d in emf_docs(text) if "ColdStart" not in d]


def assert_valid_emf(doc):
    """The EMF specification's structural rules."""
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    [directive] = meta["CloudWatchMetrics"]
    assert isinstance(directive["Namespace"], str) and directive["Namespace"]
    for dimension_set in directive["Dimensions"]:
        assert 1 <= len(dimension_set) <= 30
        for name in dimension_set:
            assert isinstance(doc[name], str), f"dimension {name} must be a string member"
    assert 1 <= len(directive["Metrics"]) <= 100
    for m in directive["Metrics"]:
        assert m["Unit"] in ("Count", "Bytes", "Milliseconds")
        value = doc[m["Name"]]
        values = value if isinstance(value, list) else [value]
        assert values and all(isinstance(v, (int, float)) for v in values)
