"""The API document (docs/openapi.yaml) as the tests read it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"

#: THE SWITCH: the batch-job routes (branch h-G, docs/jobs.md) are in the
#: document; set this to True once they are in app.py, and the route check and
#: the contract run take them in. While False, the route check asserts they
#: are *not* routes yet, so merging them without flipping this fails loudly.
JOBS_ROUTES_MERGED = True
#: The document's paths that are the batch-job routes.
JOBS_PATHS = frozenset({"/jobs", "/jobs/{job_id}", "/results/{file_id}"})

#: An operation's HTTP methods, as the Path Item object names them.
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The parsed document (YAML anchors resolved)."""
    with open(DOCUMENT, encoding="utf-8") as f:
        return dict(yaml.safe_load(f))


def operations(include_jobs: bool = JOBS_ROUTES_MERGED) -> set[tuple[str, str]]:
    """Every documented ``(path, METHOD)``; the job routes only if ``include_jobs``."""
    found = set()
    for path, item in document()["paths"].items():
        if path in JOBS_PATHS and not include_jobs:
            continue
        found |= {(path, method.upper()) for method in METHODS if method in item}
    return found


def resolve(node: Any) -> Any:
    """``node`` with every local ``$ref`` replaced by what it points at."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            target: Any = document()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target)
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node
