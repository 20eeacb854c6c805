"""onnxruntime's process-wide setup: silent logging and one capped allocator.

Measured with onnxruntime 1.32 (see tests/reliability/test_hostile_models.py):

* Constant folding runs operators at load time, outside any allocator
  cap: a 164-byte ``ConstantOfShape([250e6])`` model took 1 GB and 5 s to
  load. Sessions are created with the ``ConstantFolding`` optimizer
  disabled; every other optimization stays on.
* An arena allocator registered in the environment (``max_mem``) and used by
  sessions through ``session.use_env_allocators`` bounds every tensor a run
  allocates: the same model then fails in 0.01 s at 55 MiB peak RSS with
  "Available memory of N is smaller than requested bytes of M". Initializers
  are not allocated from it (they are counted at load instead).
* With its default logger severity onnxruntime prints ``[E:onnxruntime...]``
  lines to stderr with no request id; at FATAL it prints nothing, and every
  error still reaches us as an exception, which the service logs as JSON.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

_lock = threading.Lock()
_registered_cap: int | None = None
_empty_dir: str | None = None
_FATAL = 4


def prepare(inference_memory_bytes: int) -> Any:
    """Import onnxruntime, silence its logger and register the capped arena
    (once per process; the first cap wins, as onnxruntime allows one)."""
    global _registered_cap
    import onnxruntime as ort

    with _lock:
        if _registered_cap is None:
            fix_mmap_threshold()  # before any session: a steady, lower peak per load
            ort.set_default_logger_severity(_FATAL)
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # kSameAsRequested (1): grow by what is asked, not by doubling,
            # so the cap is reachable by the last request that fits.
            config = ort.OrtArenaCfg({"max_mem": int(inference_memory_bytes), "arena_extend_strategy": 1})
            ort.create_and_register_allocator(info, config)
            _registered_cap = int(inference_memory_bytes)
        elif _registered_cap != inference_memory_bytes:
            log.warning(
                "onnxruntime allocator cap stays %d bytes (asked %d): it is set once per process",
                _registered_cap,
                inference_memory_bytes,
            )
    return ort


def empty_dir() -> str:
    """A private, empty, unreadable directory: where onnxruntime is told
    external data lives (``session.model_external_initializers_file_folder_path``).
    It applies to models loaded by path too (measured on 1.32): without it a
    relative location would resolve against the model path's directory,
    and ``../`` out of it was followed; with it a location finds nothing, and
    ``..`` or an absolute path is refused as escaping it."""
    global _empty_dir
    with _lock:
        if _empty_dir is None:
            import tempfile

            path = tempfile.mkdtemp(prefix="onnx-none-")
            os.chmod(path, 0)
            _empty_dir = path
        return _empty_dir


def session_kwargs() -> dict[str, Any]:
    """Extra InferenceSession arguments: no load-time constant folding."""
    return {"disabled_optimizers": ["ConstantFolding"]}


def run_options() -> Any:
    """Fresh RunOptions for one run (terminate is per run), silent logging."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = _FATAL
    return options


_statm: tuple[int, int] | None = None  # (pid that opened it, fd)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The process's resident set size now (Linux ``/proc``), or 0 where unknown.

    ``/proc/self/statm`` stays open and is re-read with ``pread``: one
    system call (~2 us) instead of open + read + close (~13 us)."""
    fields = _statm_fields()
    return fields[1] * _PAGE if fields else 0


def trim_heap() -> None:
    """Give the allocator's free memory back to the system (glibc
    ``malloc_trim(0)``, which also releases free pages inside its arenas),
    so that anonymous RSS measured next counts what is held, not what a
    load freed but the allocator kept: the footprint is measured the same
    way every time. A no-op where glibc is not there."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


MMAP_THRESHOLD = 1024 * 1024
"""Allocations from this size get their own mapping, returned on free."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at :data:`MMAP_THRESHOLD` instead of its
    dynamic default, which rises to the size of any mapped block freed (up to
    32 MiB). Without this, once a session's parse frees its first large
    protobuf buffer, every later one comes from the heap arenas, where what
    the parse frees is reused or not depending on how onnxruntime's threads
    interleave: the peak of one 400 MiB model's session creation measured
    1.37-1.53x the file from run to run (1.03x every time with this), 1.43x
    at 50 MiB (1.27x). The cost: allocations of 1 MiB or more map fresh
    pages (about +25 ms on a 50 MiB model's session creation, none seen at
    400 MiB). Setting the threshold also ends glibc's dynamic adjustment.
    A no-op where glibc is not there."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _glibc() -> Any:
    global _libc
    if _libc is None:
        _libc = False
        try:
            import ctypes

            lib = ctypes.CDLL("libc.so.6")
            lib.malloc_trim, lib.mallopt  # noqa: B018 - both exist (glibc), or neither is used
            _libc = lib
        except (OSError, AttributeError):
            pass
    return _libc or None


_libc: Any = None


def anon_rss_bytes() -> int:
    """Resident memory not backed by files (heap, arenas), or 0 where unknown.

    What a loaded session holds: pages of a model file mapped for hashing or
    scanning are file-backed and shared with the page cache, so they do not
    count here (``resident - shared`` of ``/proc/self/statm``)."""
    fields = _statm_fields()
    return (fields[1] - fields[2]) * _PAGE if fields else 0


def _statm_fields() -> list[int]:
    global _statm
    try:
        statm = _statm
        if statm is None or statm[0] != os.getpid():  # a forked child reopens its own
            with _lock:
                if _statm is None or _statm[0] != os.getpid():
                    _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
                statm = _statm
        fields = [int(v) for v in os.pread(statm[1], 128, 0).split()[:3]]
    except (OSError, ValueError):
        return []
    return fields if len(fields) == 3 else []
