"""Scrubbing of third-party error text before it reaches a client.

onnxruntime (and numpy) messages carry source locations
(``/onnxruntime_src/.../bfc_arena.cc:360``), C++ signatures, temp and store
paths. Every runtime message that goes into a response passes through
:func:`scrub`: one place that decides what a client may read.
"""

from __future__ import annotations

import re

_LIMIT = 300
# "[ONNXRuntimeError] : 1 : FAIL : " prefixes.
_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
# A source location with an optional C++ signature after it:
# "/onnxruntime_src/x/y.cc:360 void* ns::F(size_t, bool) ".
_SOURCE = re.compile(r"\S*\.(?:cc|cpp|cxx|c|h|hpp|cu|py)(?::\d+)+(?:\s+[^\s(]*\s*[\w:~<>*&]+\([^)]*\)(?:\s*const)?)?")
# Leftover C++ qualified names and signatures ("onnxruntime::BFCArena::Alloc(size_t)").
_CPP = re.compile(r"(?:[\w~]+::)+[\w~]+(?:\([^()]*(?:\([^()]*\)[^()]*)*\))?(?:\s*const)?")
# Absolute paths (and /proc/self/fd/N).
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)*[\w.@+-]*")
# Windows-style or quoted leftovers are rare; anything else long is truncated.


def scrub(text: str, limit: int = _LIMIT) -> str:
    """``text`` without source locations, signatures or paths, on one line, bounded."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    # onnxruntime puts its reason on the last line; Python tracebacks too.
    line = lines[-1] if lines else ""
    line = _ORT_PREFIX.sub("", line)
    line = _SOURCE.sub("", line)
    line = _CPP.sub("", line)
    line = _PATH.sub("<path>", line)
    line = re.sub(r"\s+", " ", line).strip(" :")
    return line[:limit] or "no details"
