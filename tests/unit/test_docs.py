"""The documentation's shape: a README that starts the day and links every
docs/ page, a configuration table that is the settings dataclass, and curls
that name routes the app has."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields
from pathlib import Path
from urllib.parse import unquote

from chalicelib.config import Settings, env_name

PROJECT = Path(__file__).resolve().parents[2]
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
README_MAX_LINES = 200
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def links(page: Path) -> set[Path]:
    """The local files a Markdown page links to, resolved."""
    return {(page.parent / target).resolve() for target, _ in LINK.findall(page.read_text()) if "://" not in target}


def test_readme_starts_the_day_in_at_most_200_lines():
    count = len(README.read_text().splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines; move reference text into docs/"


def test_readme_links_every_docs_page():
    pages = {page.resolve() for page in DOCS.rglob("*.md")}
    assert len(pages) >= 10, pages
    missing = sorted(str(page.relative_to(PROJECT)) for page in pages - links(README))
    assert not missing, f"README.md does not link {missing}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.M):
        slugs.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return slugs


def test_every_local_link_between_the_docs_resolves():
    for page in [README, *DOCS.rglob("*.md")]:
        for target, anchor in LINK.findall(page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            where = (str(page.relative_to(PROJECT)), target + anchor)
            assert path.exists(), where
            if anchor and path.suffix == ".md":
                assert anchor[1:] in anchors(path), where


def configuration_table() -> list[str]:
    text = (DOCS / "configuration.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    names: list[str] = []
    for row in rows:
        first_cell = row.split("|")[1]
        names += re.findall(r"`([A-Z][A-Z0-9_]*)`", first_cell)
    return names


def test_the_configuration_table_lists_every_setting_and_nothing_else():
    documented = configuration_table()
    assert len(documented) == len(set(documented)), "a setting is documented twice"
    settings = {env_name(f) for f in fields(Settings)}
    assert set(documented) - settings == set(), "documented but not a Settings field"
    assert settings - set(documented) == set(), "a Settings field missing from docs/configuration.md"


# Every curl in the docs names a route the app has, with a method it answers,
# and any JSON body it sends parses. (The curls of docs/protocol.md and of the
# README's tour are also run against a local stack: tests/functional/.)
API_BASES = ("$API_URL", "$API", "http://127.0.0.1:8000")


def curls(text: str) -> list[list[str]]:
    """Each curl command in the page's bash/sh blocks, split as bash would."""
    found = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line)  # a trailing comment
            for part in re.split(r"\$\(|\||&&|;", line):
                if re.match(r"\s*curl\s", part):
                    found.append(shlex.split(part.strip().rstrip(")")))
    return found


def route_patterns() -> list[tuple[re.Pattern[str], set[str]]]:
    from app import app

    patterns = []
    for path, methods in app.routes.items():
        regex = re.escape(path)
        regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", regex)
        patterns.append((re.compile(f"^{regex}$"), set(methods)))
    return patterns


def check(argv: list[str], patterns: list[tuple[re.Pattern[str], set[str]]]) -> str | None:
    """What is wrong with one curl command line, or None."""
    method, url, body = "GET", None, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg in ("-d", "--data", "--data-binary"):
            body = next(args)
            method = "POST" if method == "GET" else method
        elif arg in ("-H", "-o", "--upload-file"):
            next(args)
        elif not arg.startswith("-"):
            url = arg
    assert url is not None, argv
    base = next((b for b in API_BASES if url.startswith(b)), None)
    if base is None:
        return None  # not the API (a presigned S3 URL)
    path = unquote(url[len(base) :].split("?")[0]) or "/"
    matches = [methods for pattern, methods in patterns if pattern.match(path)]
    if not matches:
        return f"no route {path}"
    if not any(method in methods for methods in matches):
        return f"{method} not allowed on {path}"
    if body is not None and not body.startswith("@") and "$" not in body:
        try:
            json.loads(body)
        except ValueError:
            return f"body is not JSON: {body}"
    return None


def test_every_curl_in_the_docs_names_a_route_the_app_has():
    patterns = route_patterns()
    pages = [README, *sorted(DOCS.rglob("*.md"))]
    seen = 0
    for page in pages:
        for argv in curls(page.read_text()):
            seen += 1
            problem = check(argv, patterns)
            assert problem is None, (str(page.relative_to(PROJECT)), " ".join(argv), problem)
    assert seen >= 30, seen


def test_the_curl_check_refuses_what_is_wrong():
    patterns = route_patterns()
    assert check(["curl", "$API_URL/nope"], patterns) == "no route /nope"
    assert check(["curl", "-X", "DELETE", "$API_URL/health"], patterns) == "DELETE not allowed on /health"
    assert check(["curl", "-d", "{nope", "$API_URL/ingest"], patterns) == "body is not JSON: {nope"
    assert check(["curl", "-X", "POST", "$API_URL/models/a%20b.onnx/rollback", "-d", "{}"], patterns) is None


def test_every_make_target_the_docs_name_exists():
    from tests.unit.test_makefile import declared_targets

    targets = declared_targets()
    named = set()
    for page in [README, *DOCS.rglob("*.md")]:
        # In code: `make x` inline, or a line of a fenced block that starts with it.
        text = page.read_text()
        named |= set(re.findall(r"`make (?:-s )?([a-z][a-z0-9-]*)", text))
        for block in re.findall(r"```\w*\n(.*?)```", text, re.S):
            named |= set(re.findall(r"^make (?:-s )?([a-z][a-z0-9-]*)", block, re.M))
    assert named - targets == set(), "the docs name make targets that do not exist"
    readme = README.read_text()
    for target in ("demo", "local", "test", "lint"):
        assert f"make {target}" in readme, target
