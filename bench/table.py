"""The benchmark table: one row per figure, then the machine and every module's notes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from bench.common import Row


def markdown(cells: list[tuple[str, ...]]) -> str:
    """``cells`` (a header row, then rows) as an aligned Markdown table."""
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def render(rows: list[Row], notes: Iterable[str], seconds: float, load_before: float) -> str:
    """A Markdown table of ``rows``, the machine's load, and ``notes``."""
    head = ("#", "What", "Ours", "Baseline (same run)", "Result", "Target", "Met")
    cells = [head] + [
        (r.number, r.what, r.ours, r.baseline, r.result, r.target, "-" if r.ok is None else ("yes" if r.ok else "NO"))
        for r in rows
    ]
    out = [markdown(cells)]
    cpus = len(os.sched_getaffinity(0))
    out.append("")
    load_after = os.getloadavg()[0]
    out.append(
        f"{cpus} CPUs, Python {sys.version.split()[0]}, total {seconds:.0f} s, "
        f"1-min load average {load_before:.1f} before / {load_after:.1f} after "
        "(other work on the machine skews every row). Notes:"
    )
    out += ["  " + n for n in notes]
    return "\n".join(out)
