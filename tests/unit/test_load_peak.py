"""The worker's allocator setup keeps a load's peak steady and low: large
blocks get their own mappings, returned on free, whatever was freed before
(glibc's dynamic mmap threshold made one model's peak vary run to run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.onnx_models import big_mlp

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024

_LARGE_BLOCKS = """
import ctypes
from chalicelib.runners import ort_env
ort_env.prepare(64 << 20)
def region(buffer):
    # Where a block lives: the brk heap ("[heap]") or a mapping of its own
    # (anonymous: no name). Not a count of mappings: the kernel merges
    # adjacent anonymous mappings, so a new one need not add a line.
    address = ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
    for line in open("/proc/self/maps"):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[5] if len(parts) > 5 else "mapping"
    return "?"
size = 2 << 20
first = bytearray(size)
del first  # with the dynamic threshold, this free raises it past 2 MiB
second = bytearray(size)
print(region(second))
"""

_PEAK = """
import os, sys
from chalicelib.runners import onnx_runner, ort_env
ort = ort_env.prepare(512 << 20)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
options = onnx_runner.session_options()
base = status("VmRSS")
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"], **ort_env.session_kwargs())
print((status("VmHWM") - base) / os.path.getsize(sys.argv[1]))
"""


def _run(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and /proc: Linux only")
def test_a_large_block_gets_its_own_mapping_after_one_was_freed():
    assert _run(_LARGE_BLOCKS) == "mapping"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator and /proc: Linux only")
def test_session_creation_peaks_steadily_near_the_file(tmp_path):
    """48 MiB of weights in 4 MiB tensors: 1.36x the file every run before,
    1.28x after (onnxruntime 1.32, this machine); the bound sits between."""
    data, _ = big_mlp(48 * MIB)
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    peaks = [float(_run(_PEAK, str(path))) for _ in range(2)]
    assert max(peaks) <= 1.32, peaks
