"""docs/protocol.md's curl examples, run as written against a real local stack:
each bash block's answer must be the JSON shown under it (requestId aside)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.doc_blocks import run_block
from tests.support.stack import running_stack

PROJECT = Path(__file__).resolve().parents[2]
DOC = PROJECT / "docs" / "protocol.md"
DOC_URL = "http://127.0.0.1:8000"
BLOCK = re.compile(r"```sh\n(.*?)```\s*\n(?:(?!```).*\n)*?```json\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    found = BLOCK.findall(DOC.read_text())
    assert len(found) >= 5, found  # ingest + ready, metadata, JSON infer, binary infer, error
    return found


@pytest.fixture(scope="module")
def api_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("protocol-doc")
    with running_stack(workdir) as endpoints:
        yield endpoints["api_url"], workdir


def test_every_curl_example_answers_what_the_doc_shows(api_url):
    url, workdir = api_url
    for script, expected in examples():
        assert DOC_URL in script and "curl" in script
        answer = json.loads(run_block(script.replace(DOC_URL, url), workdir))
        answer.pop("requestId", None)
        assert answer == json.loads(expected), script
