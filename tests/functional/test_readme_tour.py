"""The README's five-minute tour, run as written against a real local stack.

`make local` (the tour's first block) is ``python -m scripts.local``; the test
starts that same command in a private workdir (``tests/support/stack.py``) on
a free port, then runs each of the tour's bash blocks in order from the
project's root, as a newcomer in a fresh clone would, and compares its answer
with the JSON shown under it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.doc_blocks import run_block
from tests.support.stack import running_stack

PROJECT = Path(__file__).resolve().parents[2]
README = PROJECT / "README.md"
DOC_HOST = "127.0.0.1:8000"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def tour() -> str:
    text = README.read_text()
    start = text.index("## A five-minute tour")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks() -> list[tuple[str, str]]:
    """The tour's fenced blocks, as (language, text), in order."""
    return BLOCK.findall(tour())


def examples() -> list[tuple[str, str]]:
    """Each ``sh`` block and the ``json`` block that answers it."""
    found = blocks()
    assert found[0] == ("bash", "make local\n"), found[0]
    pairs = []
    rest = found[1:]
    assert len(rest) % 2 == 0, [lang for lang, _ in rest]
    for (lang, script), (answer_lang, answer) in zip(rest[::2], rest[1::2], strict=True):
        assert (lang, answer_lang) == ("sh", "json"), (lang, answer_lang, script)
        pairs.append((script, answer))
    return pairs


def test_the_tour_has_its_steps():
    scripts = [script for script, _ in examples()]
    assert len(scripts) >= 5, scripts  # ingest, state, /predict, /v2 infer, tritonclient
    for step in ("/ingest", "/models/", "/predict", "/v2/models/", "tritonclient"):
        assert any(step in script for script in scripts), step
    assert all(DOC_HOST in script for script in scripts)


@pytest.fixture(scope="module")
def api_host(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("readme-tour")
    with running_stack(workdir) as endpoints:
        yield endpoints["api_url"].removeprefix("http://")


def test_every_tour_command_answers_what_the_readme_shows(api_host):
    for script, expected in examples():
        # From the project's root, as in a fresh clone (`make clients-venv` may build a venv).
        answer = run_block(script.replace(DOC_HOST, api_host), PROJECT, timeout=300)
        assert json.loads(answer) == json.loads(expected), (script, answer)
