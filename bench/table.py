"""The benchmark table: one row per figure, then the machine and every module's notes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from bench.common import Row


def render(rows: list[Row], notes: Iterable[str], seconds: float, load_before: float) -> str:
    """A Markdown table of ``rows``, the machine's load, and ``notes``."""
    head = ("#", "What", "Ours", "Baseline (same run)", "Result", "Target", "Met")
    cells = [head] + [
        (r.number, r.what, r.ours, r.baseline, r.result, r.target, "-" if r.ok is None else ("yes" if r.ok else "NO"))
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells[1:]]
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
