"""`make help` lists every target of the Makefile and make/*.mk, each with a line of its own."""

import re
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def declared_targets() -> set[str]:
    found = set()
    for path in [PROJECT / "Makefile", *sorted((PROJECT / "make").glob("*.mk"))]:
        for line in path.read_text().splitlines():
            m = re.match(r"([a-z][a-z0-9-]*)\s*:(?!=)", line)
            if m:
                found.add(m.group(1))
    return found


def test_make_help_describes_every_target_once():
    out = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=PROJECT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    listed = [line.split(None, 2) for line in out.splitlines() if line.startswith("  make ")]
    names = [parts[1] for parts in listed]
    assert len(names) == len(set(names)), names
    assert set(names) == declared_targets()
    for parts in listed:
        assert len(parts) == 3 and len(parts[2]) > 10, parts
