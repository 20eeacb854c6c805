"""Where the demonstration runs: a deployed stack or `make local`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TargetError(ValueError):
    """The outputs or endpoints file is missing or incomplete."""


@dataclass(frozen=True)
class Target:
    """The API and bucket to exercise.

    ``s3_endpoint`` is set only for the local stack, whose moto S3 accepts
    any credentials; a deployed stack is reached through the API alone (the
    client may have no bucket credentials, so it uploads by presigned URL).
    """

    api_url: str
    bucket: str | None = None
    api_key: str | None = None
    s3_endpoint: str | None = None
    region: str | None = None
    label: str = "aws"

    @property
    def local(self) -> bool:
        return self.s3_endpoint is not None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise TargetError(f"{what} not found: {path}") from None
    except ValueError as exc:
        raise TargetError(f"{what} is not valid JSON: {path} ({exc})") from None
    if not isinstance(doc, dict):
        raise TargetError(f"{what} must be a JSON object: {path}")
    return doc


def _output(doc: dict[str, Any], name: str) -> Any:
    """One value of ``terraform output -json`` ({name: {value, sensitive, type}})."""
    entry = doc.get(name)
    if isinstance(entry, dict) and "value" in entry:
        return entry["value"]
    return entry  # also accept a flat {name: value} file


def from_outputs(path: str | Path) -> Target:
    """A target from ``terraform output -json > outputs.json`` (infra/outputs.tf)."""
    doc = _read_json(Path(path), "Terraform outputs file")
    api_url = _output(doc, "api_url")
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        raise TargetError(f"{path}: output 'api_url' is missing or not a URL")
    bucket = _output(doc, "s3_bucket_name")
    key = _output(doc, "api_key")
    region = _output(doc, "region")
    return Target(
        api_url=api_url.rstrip("/"),
        bucket=bucket if isinstance(bucket, str) and bucket else None,
        api_key=key if isinstance(key, str) and key else None,
        region=region if isinstance(region, str) else None,
        label=str(path),
    )


def from_local(path: str | Path) -> Target:
    """A target from ``.local/endpoints.json``, written by ``make local``."""
    doc = _read_json(Path(path), "Local endpoints file (is `make local` running?)")
    missing = [k for k in ("api_url", "s3_endpoint", "bucket") if not isinstance(doc.get(k), str)]
    if missing:
        raise TargetError(f"{path}: missing {', '.join(missing)}")
    return Target(
        api_url=doc["api_url"].rstrip("/"),
        bucket=doc["bucket"],
        s3_endpoint=doc["s3_endpoint"],
        region="us-east-1",
        label="local",
    )
