"""ONNX models on onnxruntime.

numpy and onnxruntime are imported when the first ``.onnx`` model loads,
never by ``import app``: the S3-event function and cold starts of routes
that do not predict never pay for them.

This module creates sessions and runs them; checking inputs against the
signature and encoding tensors is format-neutral (:mod:`.tensor_runner`,
:mod:`chalicelib.codecs`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from chalicelib import deadline
from chalicelib.codecs.spec import spec_of as _spec
from chalicelib.errors import (
    InferenceTimeout,
    InvalidRequest,
    ModelRefused,
    ProcessingFailed,
    ResourceExhausted,
)
from chalicelib.runners import (
    Limits,
    LoadedModel,
    bounded_run,
    onnx_scan,
    ort_env,
)
from chalicelib.runners.tensor_runner import TensorRunner
from chalicelib.scrub import scrub
from chalicelib.signature import ONNX_PLATFORM

log = logging.getLogger(__name__)

# What onnxruntime (BFC arena, CPU allocator) says when memory runs out.
_ALLOCATION_MARKERS = (
    "Available memory of",
    "Failed to allocate memory",
    "bad_alloc",
    "std::bad_alloc",
    "Out of memory",
    "out of memory",
)
_WATCH_INTERVAL = 0.02  # seconds between the watchdog's clock and RSS checks
_STOP_GRACE = 0.5  # how long past its limit a run may take to notice terminate


def session_options() -> Any:
    """Session options suited to a Lambda: one request at a time, every vCPU
    for the operators of that request, the default memory planning, and the
    process's capped allocator (see :mod:`ort_env`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _available_cpus()
    # One request per container: parallel branches would only compete with
    # intra-op threads for the same vCPUs.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Reuses buffer plans between runs of the same shapes (warm requests).
    options.enable_mem_pattern = True
    options.enable_cpu_mem_arena = True
    options.log_severity_level = 4  # nothing on stderr: errors reach us as exceptions
    # Every tensor a run allocates comes from the capped arena.
    options.add_session_config_entry("session.use_env_allocators", "1")
    # Defence in depth behind the scan: external data resolves into an empty directory.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", ort_env.empty_dir())
    return options


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def create_session(model: LoadedModel, options: Any) -> tuple[Any, int]:
    """An InferenceSession over the verified model file and the memory it holds.

    Before onnxruntime sees the file, a bounded protobuf scan refuses any
    tensor stored outside it (:mod:`onnx_scan`). Where the reader offers a
    path to the very file it holds (``native_path``), the scan walks a
    read-only mapping of it in place, the reader hashes the same mapping in
    the background, and onnxruntime loads the path itself: no copy of the
    model in Python. The path is a symlink in a fresh private directory that
    holds nothing else, and onnxruntime is told that external data lives in
    an empty unreadable directory, so a reference the scan missed still
    resolves to nothing. Otherwise the bytes are read (and hashed) and
    loaded from memory. The memory the loaded session holds is measured
    (anonymous RSS before and after, at least the file size) and checked
    against the per-model ceiling, ``MODEL_CACHE_BYTES``.
    """
    limits = model.limits
    name = model_name(model)
    ceiling = limits.model_memory_bytes
    if model.manifest.size > ceiling:
        # Its weights alone would not fit: refuse before reading a byte.
        raise ModelRefused(_too_big(name, model.manifest.size, ceiling))
    ort = ort_env.prepare(limits.inference_memory_bytes)
    deadline.check("model load")
    native = getattr(model.file, "native_path", None)
    path = native() if native is not None else None
    if path is None:
        data: Any = model.file.read()
        _scan(name, data)
        return _session(ort, name, data, options, ceiling, model.manifest.size)
    _scan(name, model.file.mapped())  # type: ignore[attr-defined]
    private = tempfile.mkdtemp(prefix="onnx-")
    try:
        link = os.path.join(private, "model.onnx")
        os.symlink(path, link)
        return _session(ort, name, link, options, ceiling, model.manifest.size)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _scan(name: str, data: Any) -> None:
    try:
        onnx_scan.scan(data)
    except onnx_scan.ExternalData:
        raise ModelRefused(
            f"Model '{name}' stores tensor data outside the model file (external data), "
            "which this service does not read; embed every tensor in the .onnx file"
        ) from None
    except onnx_scan.ScanError as exc:
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model (the file {exc})") from None


def _session(ort: Any, name: str, source: Any, options: Any, ceiling: int, size: int) -> tuple[Any, int]:
    """The session over ``source`` (a path or bytes) and its measured footprint."""
    before = ort_env.anon_rss_bytes()
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], **ort_env.session_kwargs())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        if _is_allocation_failure(exc):
            raise ModelRefused(_too_big(name, None, ceiling)) from None
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model ({scrub(str(exc))})") from None
    # A bytes source is still alive here but was allocated before ``before``.
    footprint = max(ort_env.anon_rss_bytes() - before, size)
    if footprint > ceiling:
        del session
        raise ModelRefused(_too_big(name, footprint, ceiling))
    return session, footprint


def _too_big(name: str, footprint: int | None, ceiling: int) -> str:
    held = f" holds {footprint} bytes once loaded," if footprint else " needs"
    return f"Model '{name}'{held} more memory than one model may take (MODEL_CACHE_BYTES = {ceiling} bytes)"


def _is_allocation_failure(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or any(marker in text for marker in _ALLOCATION_MARKERS)


def model_name(model: LoadedModel) -> str:
    """The model's name as clients wrote it (``mlp.onnx``)."""
    return model.manifest.key.split("/", 1)[-1]


class OnnxRunner(TensorRunner):
    """A loaded InferenceSession plus the signature requests are checked against."""

    platform = ONNX_PLATFORM

    def __init__(self, name: str, session: Any, nbytes: int, limits: Limits | None = None) -> None:
        self.name = name
        self.session = session
        self.nbytes = nbytes
        self.limits = limits or Limits()
        self.inputs = [_spec(i) for i in session.get_inputs()]
        self.outputs = [_spec(o) for o in session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]

    def _run(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> list[Any]:
        """``session.run`` under a watchdog: past the time limit (or the
        request's deadline), or past the memory a run may add, the run is
        terminated through ``RunOptions.terminate`` (checked by onnxruntime
        between operators, loop iterations included)."""
        limits = self.limits
        budget = limits.predict_timeout_seconds
        timeout = deadline.remaining(budget)
        if timeout <= 0:
            raise deadline_error(budget, limits)
        options = ort_env.run_options()

        def stop() -> None:
            options.terminate = True

        # The run has its own (reused) thread: terminate is only checked
        # between operators, so one long operator (a huge MatMul) would hold
        # the request past its deadline. The caller waits at most a grace
        # period more, then answers TIMEOUT and leaves the terminated run to
        # finish (its memory stays within the shared, capped arena).
        outcome = bounded_run.run(
            lambda: self.session.run(output_names, feeds, options),
            timeout=timeout,
            grace=_STOP_GRACE,
            tick=_WATCH_INTERVAL,
            rss=ort_env.rss_bytes,
            rss_limit=ort_env.rss_bytes() + limits.inference_memory_bytes,
            stop=stop,
        )
        if not outcome.finished:
            log.warning(
                "onnxruntime run of '%s' did not stop within %.1f s of its limit; answered TIMEOUT",
                self.name,
                _STOP_GRACE,
            )
            raise deadline_error(budget, limits, timeout)
        exc = outcome.error
        if exc is None:
            return list(outcome.value)
        # onnxruntime's own logger is silent: its error is logged here, as
        # JSON with the request id (scrubbed like any runtime message).
        log.warning("onnxruntime run of '%s' failed (%s): %s", self.name, outcome.stopped or "error", scrub(str(exc)))
        if outcome.stopped == "time":
            raise deadline_error(budget, limits, timeout)
        if outcome.stopped == "memory" or _is_allocation_failure(exc):
            raise ResourceExhausted(
                f"Model '{self.name}' needs more memory for these inputs than a run may take "
                f"(INFERENCE_MEMORY_BYTES = {limits.inference_memory_bytes} bytes)"
            )
        if not isinstance(exc, Exception):
            raise exc
        # What validation cannot see (e.g. inner dims that disagree
        # inside the graph) is still the caller's input, not our fault.
        raise InvalidRequest(f"The model rejected the inputs ({scrub(str(exc))}); {self.signature()}")


def deadline_error(budget: float, limits: Limits, waited: float | None = None) -> InferenceTimeout:
    """The TIMEOUT error for a run stopped by the clock, naming which clock."""
    if waited is not None and waited >= budget:
        return InferenceTimeout(
            f"Inference ran longer than {limits.predict_timeout_seconds:g} s (PREDICT_TIMEOUT_SECONDS) and was stopped"
        )
    return InferenceTimeout("Inference was stopped at the request's deadline")


def load(model: LoadedModel) -> OnnxRunner:
    """Build the runner; a file onnxruntime cannot load is ProcessingFailed naming
    the model, one it must not load (external data, too big) is ModelRefused."""
    session, footprint = create_session(model, session_options())
    return OnnxRunner(model_name(model), session, footprint, model.limits)
