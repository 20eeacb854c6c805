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
import pickle
import shutil
import tempfile
import time
from typing import Any

from chalicelib import deadline
from chalicelib.codecs.spec import spec_of as _spec
from chalicelib.errors import (
    DeadlineExceeded,
    InferenceTimeout,
    InvalidRequest,
    ModelRefused,
    ProcessingFailed,
    ResourceExhausted,
    WorkerCrashed,
)
from chalicelib.runners import (
    Limits,
    LoadedModel,
    onnx_locale,
    onnx_scan,
    ort_env,
    remote,
    supervisor,
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


def create_session(model: LoadedModel, options: Any = None) -> tuple[Any, int]:
    """A session over the verified model file, loaded in the inference worker,
    and the memory it holds there.

    Before onnxruntime sees the file, a bounded protobuf scan refuses any
    tensor stored outside it (:mod:`onnx_scan`). Where the reader offers a
    path to the very file it holds (``native_path``), the scan walks a
    read-only mapping of it in place, the reader hashes the same mapping in
    the background, and the worker's onnxruntime loads the path itself: no
    copy of the model in either process. The path is a symlink in a fresh
    private directory that holds nothing else, and onnxruntime is told that
    external data lives in an empty unreadable directory, so a reference the
    scan missed still resolves to nothing. Otherwise the bytes are read (and
    hashed) and sent to the worker. Session creation runs under the load's
    deadline (``MODEL_LOAD_TIMEOUT_SECONDS`` or the request's, whichever is
    first) and memory bound (``MAX_MODEL_BYTES`` + ``INFERENCE_MEMORY_BYTES``
    over what the worker held): past either the worker is killed. The memory
    the loaded session holds is measured in the worker (anonymous RSS before
    and after, at least the file size) and checked against the per-model
    ceiling, ``MAX_MODEL_BYTES``; the worker itself is sized by
    ``MODEL_CACHE_BYTES`` (every cached model) + ``INFERENCE_MEMORY_BYTES``. ``options`` is unused: the worker builds
    its own (:func:`session_options`).
    """
    limits = model.limits
    name = model_name(model)
    ceiling = limits.max_model_bytes
    if model.manifest.size > ceiling:
        # Its weights alone would not fit: refuse before reading a byte.
        raise ModelRefused(_too_big(name, model.manifest.size, ceiling))
    workers = supervisor.shared()
    sizing = _sizing(limits)
    workers.prestart(sizing)  # its imports overlap the hash and the scan
    deadline.check("model load")
    # The load's clock starts here: reading, scanning and session creation
    # together take at most MODEL_LOAD_TIMEOUT_SECONDS.
    budget = deadline.remaining(limits.load_timeout_seconds)
    clock = (time.monotonic() + budget, budget >= limits.load_timeout_seconds)
    native = getattr(model.file, "native_path", None)
    path = native() if native is not None else None
    # Ingest scanned these very bytes (the report sits beside their sha256 in
    # the manifest): under limits it is within, the walk would pass again, so
    # onnxruntime starts reading at once, beside our parallel readers, instead
    # of after a walk that waits for the file's last byte. The bytes are still
    # hashed as they are read; a mismatch discards the session (StoreCorrupt).
    scanned = _scanned(model.manifest.scan, limits)
    if path is None:
        data: Any = model.file.read()
        if not scanned:
            _scan(name, data, limits)
        return _remote_session(workers, model, name, pickle.PickleBuffer(data), sizing, clock)
    if not scanned:
        _scan(name, model.file.mapped(), limits)  # type: ignore[attr-defined]
    if path.startswith("/proc/self/"):
        # The worker opens the descriptor this process holds (same user).
        path = f"/proc/{os.getpid()}/" + path[len("/proc/self/") :]
    private = tempfile.mkdtemp(prefix="onnx-")
    try:
        link = os.path.join(private, "model.onnx")
        os.symlink(path, link)
        return _remote_session(workers, model, name, link, sizing, clock)
    finally:
        shutil.rmtree(private, ignore_errors=True)


_WORKER_START_SECONDS = 10.0  # most a fresh worker's start may add to a load without a request deadline


def _reply_limit(limits: Limits) -> int:
    """Most bytes a run's outputs may take on the way back from the worker: 16
    bytes per allowed element (complex128) plus twice the text a response
    may hold (pickled strings). Anything more fails the exact checks anyway,
    so it is refused in the worker and never held by the service."""
    return 16 * limits.max_output_elements + 2 * limits.max_response_bytes + 64 * 1024


def _sizing(limits: Limits) -> supervisor.Sizing:
    return supervisor.Sizing(limits.model_cache_bytes, limits.inference_memory_bytes)


def _remote_session(
    workers: supervisor.Supervisor,
    model: LoadedModel,
    name: str,
    source: Any,
    sizing: supervisor.Sizing,
    clock: tuple[float, bool],
) -> tuple[Any, int]:
    """Load ``source`` (a path, or the bytes) in the worker, bounded in time
    and memory. ``clock``: when the load must end (monotonic) and whether
    that is MODEL_LOAD_TIMEOUT_SECONDS (else the request's deadline)."""
    limits = model.limits
    ceiling = limits.max_model_bytes
    cap = limits.load_timeout_seconds
    ends, own_clock = clock
    timeout = max(0.0, ends - time.monotonic())
    sid = f"{model.manifest.key}@{model.manifest.sha256}"
    try:
        reply, generation = workers.call(
            ("load", sid, source, name, ceiling, model.manifest.size),
            sizing=sizing,
            timeout=timeout,
            allowance=ceiling + limits.inference_memory_bytes,
            within=deadline.remaining(cap + _WORKER_START_SECONDS),
        )
    except supervisor.Stopped as stopped:
        log.warning("loading '%s' stopped the inference worker (%s)", name, stopped)
        if stopped.reason == "time":
            which = f"{cap:g} s (MODEL_LOAD_TIMEOUT_SECONDS)" if own_clock else "the request's deadline"
            raise DeadlineExceeded("load", f"Loading model '{name}' took longer than {which} and was stopped") from None
        if stopped.reason == "memory":
            raise ModelRefused(_too_big(name, None, ceiling)) from None
        raise WorkerCrashed(f"The inference worker stopped unexpectedly while loading model '{name}'; retry") from None
    if reply[0] != "ok":
        _, kind, text = reply
        raise (ModelRefused if kind == "refused" else ProcessingFailed)(text)
    _, inputs, outputs, footprint, _worker_ms = reply
    return remote.RemoteSession(workers, sid, generation, sizing, inputs, outputs), footprint


def _scan_limits(limits: Limits) -> onnx_scan.ScanLimits:
    return onnx_scan.ScanLimits(
        max_nodes=limits.max_model_nodes,
        max_nesting=limits.max_model_nesting,
        max_tensor_bytes=limits.max_model_bytes,
    )


def _scanned(recorded: Any, limits: Limits) -> bool:
    """Whether ingest's recorded scan of the model's bytes (the manifest's
    ``scan``) proves a walk under today's limits would pass: written by this
    scanner version, every count within. Otherwise the load scans."""
    report = onnx_scan.ScanReport.from_json(recorded)
    return report is not None and report.within(_scan_limits(limits))


def _scan(name: str, data: Any, limits: Limits) -> None:
    """Refuse before load what onnxruntime must not load (external data) or
    would make too big (nodes with functions inlined, nesting, densified
    sparse tensors): a 400 naming the model and the setting."""
    try:
        onnx_scan.scan(data, _scan_limits(limits))
    except onnx_scan.LimitExceeded as exc:
        raise ModelRefused(f"Model '{name}' {exc}") from None
    except onnx_scan.ExternalData:
        raise ModelRefused(
            f"Model '{name}' stores tensor data outside the model file (external data), "
            "which this service does not read; embed every tensor in the .onnx file"
        ) from None
    except onnx_scan.ScanError as exc:
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model (the file {exc})") from None


def _session(ort: Any, name: str, source: Any, options: Any, ceiling: int, size: int) -> tuple[Any, int]:
    """The session over ``source`` (a path or bytes) and its measured footprint."""
    ort_env.trim_heap()
    before = ort_env.anon_rss_bytes()
    try:
        session = _create(ort, name, source, options, ceiling)
    except _LocaleMissing as missing:
        # A StringNormalizer asks for a locale this machine lacks (skl2onnx's
        # text pipelines ask for en_US.UTF-8; Lambda has only C.UTF-8): load
        # it once more with the nearest locale that exists here.
        substitute = onnx_locale.nearest(missing.locale)
        if substitute is None:
            raise ModelRefused(_locale_refusal(name, missing.locale)) from None
        try:
            rewritten = onnx_locale.with_locale(_bytes(source), substitute)
        except onnx_scan.ScanError as exc:
            raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model (the file {exc})") from None
        session = _create(ort, name, rewritten, options, ceiling, rewritten=True)
        del rewritten
    # A bytes source is still alive here but was allocated before ``before``.
    # Transient buffers of the parse are freed; the allocator returns them
    # before the measure, so the same model measures the same each time.
    ort_env.trim_heap()
    footprint = max(ort_env.anon_rss_bytes() - before, size)
    if footprint > ceiling:
        del session
        raise ModelRefused(_too_big(name, footprint, ceiling))
    return session, footprint


class _LocaleMissing(Exception):
    def __init__(self, locale: str) -> None:
        super().__init__(locale)
        self.locale = locale


def _create(ort: Any, name: str, source: Any, options: Any, ceiling: int, *, rewritten: bool = False) -> Any:
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], **ort_env.session_kwargs())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        if _is_allocation_failure(exc):
            raise ModelRefused(_too_big(name, None, ceiling)) from None
        locale = onnx_locale.missing_locale(str(exc))
        if locale is not None:
            if not rewritten:
                raise _LocaleMissing(locale) from None
            # The substitute failed too.
            raise ModelRefused(_locale_refusal(name, locale)) from None
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model ({scrub(str(exc))})") from None


def _bytes(source: Any) -> bytes:
    if isinstance(source, str):
        with open(source, "rb") as f:
            return f.read()
    return bytes(source)


def _locale_refusal(name: str, locale: str) -> str:
    return (
        f"Model '{name}' has a StringNormalizer that needs the locale '{locale}', which this machine lacks, "
        "and no UTF-8 locale near it exists here (C.UTF-8 is on Lambda): convert it with the locale named, "
        "e.g. skl2onnx.to_onnx(..., options={TfidfVectorizer: {'locale': 'C.UTF-8'}})"
    )


def _too_big(name: str, footprint: int | None, ceiling: int) -> str:
    held = f" holds {footprint} bytes once loaded," if footprint else " needs"
    return f"Model '{name}'{held} more memory than one model may take (MAX_MODEL_BYTES = {ceiling} bytes)"


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

    def valid(self) -> bool:
        """Whether the session is still loaded (its worker was not replaced)."""
        alive = getattr(self.session, "alive", None)
        return alive() if alive is not None else True

    def _run(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> list[Any]:
        """The model's outputs for ``feeds`` (``None``: every output, in declared
        order), computed in the inference worker. Past the time limit (or the
        request's deadline), or past the memory a run may add
        (``INFERENCE_MEMORY_BYTES``), the worker is killed: nothing of the run
        goes on after the answer, and the next request gets a fresh worker."""
        limits = self.limits
        budget = limits.predict_timeout_seconds
        timeout = deadline.remaining(budget)
        if timeout <= 0:
            raise deadline_error(budget, limits)
        names = self.output_names if output_names is None else output_names
        try:
            reply = self.session.run(
                names,
                feeds,
                timeout=timeout,
                allowance=limits.inference_memory_bytes,
                reply_limit=_reply_limit(limits),
            )
        except supervisor.Stopped as stopped:
            log.warning("onnxruntime run of '%s' stopped the inference worker (%s)", self.name, stopped)
            if stopped.reason == "time":
                raise deadline_error(budget, limits, timeout) from None
            if stopped.reason == "memory":
                raise self._out_of_memory() from None
            raise WorkerCrashed(
                f"The inference worker stopped unexpectedly while running model '{self.name}'; retry"
            ) from None
        if reply[0] == "ok":
            return list(reply[1])
        _, kind, text = reply
        # onnxruntime's own logger is silent: its error is logged here, as
        # JSON with the request id (scrubbed like any runtime message).
        log.warning("onnxruntime run of '%s' failed (%s): %s", self.name, kind, scrub(text))
        if kind == "memory":
            raise self._out_of_memory()
        if kind == "outputs":
            raise ResourceExhausted(
                f"Model '{self.name}' returned {text} bytes of outputs, more than a response may carry "
                f"(MAX_OUTPUT_ELEMENTS = {limits.max_output_elements}, MAX_RESPONSE_BYTES = "
                f"{limits.max_response_bytes} bytes)"
            )
        if kind in ("gone", "failed"):
            raise WorkerCrashed(f"Model '{self.name}' was unloaded while the request ran; retry")
        # What validation cannot see (e.g. inner dims that disagree
        # inside the graph) is still the caller's input, not our fault.
        raise InvalidRequest(f"The model rejected the inputs ({scrub(text)}); {self.signature()}")

    def _out_of_memory(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"Model '{self.name}' needs more memory for these inputs than a run may take "
            f"(INFERENCE_MEMORY_BYTES = {self.limits.inference_memory_bytes} bytes)"
        )


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
    session, footprint = create_session(model)
    return OnnxRunner(model_name(model), session, footprint, model.limits)
