"""ONNX models on onnxruntime.

numpy and onnxruntime are imported when the first ``.onnx`` model loads,
never by ``import app``: the S3-event function and cold starts of routes
that do not predict never pay for them.

Inputs, all checked against the model's declared signature before any
inference runs (every mismatch is a 400 naming what the model expects):

* inline ``inputs``: a JSON object mapping each input name to a nested list
  (or a bare number for a rank-0 input);
* a stored ``inputs/<name>.json``: the same object, as a file;
* a stored ``inputs/<name>.npy``: one array, for models with exactly one
  input (an ``.npy`` file carries no input name).

Values are cast to the declared dtype only within a kind that keeps their
meaning: integers may feed float inputs, integral floats may feed integer
inputs (within range), nothing else crosses kinds (strings never feed
numbers, numbers never feed booleans).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from chalicelib import deadline
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
    InputFile,
    Limits,
    LoadedModel,
    Runner,
    onnx_scan,
    ort_env,
    remote,
    supervisor,
)
from chalicelib.scrub import scrub

log = logging.getLogger(__name__)

# ONNX tensor element types -> numpy dtype names (strings: numpy is lazy).
_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}
# Source numpy kinds each target kind accepts (see the module docstring).
_ACCEPTS = {"f": "fiu", "i": "iuf", "u": "iuf", "b": "b", "U": "U"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "booleans", "U": "strings"}
# What onnxruntime (BFC arena, CPU allocator) says when memory runs out.
_ALLOCATION_MARKERS = (
    "Available memory of",
    "Failed to allocate memory",
    "bad_alloc",
    "std::bad_alloc",
    "Out of memory",
    "out of memory",
)


@dataclass(frozen=True)
class TensorSpec:
    """One declared input: its name, numpy dtype (or None) and shape."""

    name: str
    onnx_type: str
    dtype: str | None
    shape: tuple[int | str | None, ...] | None  # None: rank unknown

    def describe(self) -> str:
        dims = (
            "any shape"
            if self.shape is None
            else "[" + ", ".join(str(d) if d is not None else "?" for d in self.shape) + "]"
        )
        return f"'{self.name}' {self.dtype or self.onnx_type} {dims}"


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
    first) and memory bound (``MODEL_CACHE_BYTES`` + ``INFERENCE_MEMORY_BYTES``
    over what the worker held): past either the worker is killed. The memory
    the loaded session holds is measured in the worker (anonymous RSS before
    and after, at least the file size) and checked against the per-model
    ceiling, ``MODEL_CACHE_BYTES``. ``options`` is unused: the worker builds
    its own (:func:`session_options`).
    """
    limits = model.limits
    name = model_name(model)
    ceiling = limits.model_memory_bytes
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
    if path is None:
        data: Any = model.file.read()
        _scan(name, data, limits)
        return _remote_session(workers, model, name, pickle.PickleBuffer(data), sizing, clock)
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
    return supervisor.Sizing(limits.model_memory_bytes, limits.inference_memory_bytes)


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
    ceiling = limits.model_memory_bytes
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
    _, inputs, outputs, footprint = reply
    return remote.RemoteSession(workers, sid, generation, sizing, inputs, outputs), footprint


def _scan(name: str, data: Any, limits: Limits) -> None:
    """Refuse before load what onnxruntime must not load (external data) or
    would make too big (nodes with functions inlined, nesting, densified
    sparse tensors): a 400 naming the model and the setting."""
    bounds = onnx_scan.ScanLimits(
        max_nodes=limits.max_model_nodes,
        max_nesting=limits.max_model_nesting,
        max_tensor_bytes=limits.model_memory_bytes,
    )
    try:
        onnx_scan.scan(data, bounds)
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
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], **ort_env.session_kwargs())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        if _is_allocation_failure(exc):
            raise ModelRefused(_too_big(name, None, ceiling)) from None
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model ({scrub(str(exc))})") from None
    # A bytes source is still alive here but was allocated before ``before``.
    # Transient buffers of the parse are freed; the allocator returns them
    # before the measure, so the same model measures the same each time.
    ort_env.trim_heap()
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


class OnnxRunner(Runner):
    """A loaded InferenceSession plus the signature requests are checked against."""

    def __init__(self, name: str, session: Any, nbytes: int, limits: Limits | None = None) -> None:
        self.name = name
        self.session = session
        self.nbytes = nbytes
        self.limits = limits or Limits()
        self.inputs = [_spec(i) for i in session.get_inputs()]
        self.outputs = [_spec(o) for o in session.get_outputs()]
        self.output_names = [o.name for o in self.outputs]

    def signature(self) -> str:
        """What the model expects, for error messages."""
        return f"model '{self.name}' expects inputs " + "; ".join(s.describe() for s in self.inputs)

    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        """Validate ``inputs`` against the signature, run (bounded in time and
        memory), check the outputs' size, return them as JSON-ready values."""
        symbols: dict[str, tuple[int, str]] = {}
        feeds = self.feeds(inputs, input_source, symbols)
        self._check_declared_outputs(symbols)
        results = self._run(feeds)
        self._check_outputs(results)
        return {name: _tensor_json(value) for name, value in zip(self.output_names, results)}

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

    def _check_declared_outputs(self, symbols: dict[str, tuple[int, str]]) -> None:
        """Refuse before running when the outputs' declared shapes, with the
        inputs' dimensions filled in, already exceed MAX_OUTPUT_ELEMENTS."""
        total = 0
        for spec in self.outputs:
            if spec.shape is None:
                return
            count = 1
            for dim in spec.shape:
                if isinstance(dim, int) and dim >= 0:
                    count *= dim
                elif isinstance(dim, str) and dim in symbols:
                    count *= symbols[dim][0]
                else:
                    return  # not known before the run: checked after it
            total += count
        if total > self.limits.max_output_elements:
            raise self._too_many_outputs(total)

    def _check_outputs(self, results: list[Any]) -> None:
        limit = self.limits.max_output_elements
        elements, text = _output_size(results, limit, self.limits.max_response_bytes)
        if elements > limit:
            raise self._too_many_outputs(elements)
        if text > self.limits.max_response_bytes:
            raise ResourceExhausted(
                f"Model '{self.name}' returned more than {self.limits.max_response_bytes} bytes of text "
                "(MAX_RESPONSE_BYTES)"
            )

    def _too_many_outputs(self, count: int) -> ResourceExhausted:
        return ResourceExhausted(
            f"Model '{self.name}' would return {'more than ' if count > 10**15 else ''}{min(count, 10**15)} "
            f"output elements; at most {self.limits.max_output_elements} are allowed (MAX_OUTPUT_ELEMENTS)"
        )

    def feeds(
        self, inputs: Any, input_source: str | None, symbols: dict[str, tuple[int, str]] | None = None
    ) -> dict[str, Any]:
        """Inputs as numpy arrays of the declared dtypes and shapes, or InvalidRequest."""
        named = self._named(inputs, input_source)
        given, expected = set(named), {s.name for s in self.inputs}
        missing, unknown = sorted(expected - given), sorted(given - expected)
        if missing or unknown:
            problems = []
            if missing:
                problems.append("missing " + ", ".join(repr(n) for n in missing))
            if unknown:
                problems.append("unknown " + ", ".join(repr(n[:60]) for n in unknown[:5]))
            raise InvalidRequest(f"Input names do not match ({'; '.join(problems)}): {self.signature()}")
        budget = self.limits.max_tensor_elements
        feeds: dict[str, Any] = {}
        symbols = {} if symbols is None else symbols
        for spec in self.inputs:
            array = self._array(spec, named[spec.name], budget)
            budget -= array.size
            self._check_shape(spec, array.shape, symbols)
            feeds[spec.name] = array
        return feeds

    def _named(self, inputs: Any, input_source: str | None) -> dict[str, Any]:
        if inputs is None:
            raise InvalidRequest(f"No inputs: send 'inputs' or a fileId naming an ingested input; {self.signature()}")
        if isinstance(inputs, (bytes, bytearray, memoryview)):
            return self._from_file(_BytesInput(input_source or "", bytes(inputs)))
        if not isinstance(inputs, dict):
            if hasattr(inputs, "head") and hasattr(inputs, "read"):
                return self._from_file(inputs)
            raise InvalidRequest(f"'inputs' must be a JSON object mapping input names to arrays; {self.signature()}")
        return inputs

    def _from_file(self, source: InputFile) -> dict[str, Any]:
        lowered = source.name.lower()
        if lowered.endswith(".npy"):
            if len(self.inputs) != 1:
                raise InvalidRequest(
                    f"An .npy input holds one unnamed array, but {self.signature()}; "
                    "use a .json input file naming each input"
                )
            return {self.inputs[0].name: _NpyArray(source)}
        if lowered.endswith(".json"):
            # Same shape and the same size limit as an inline body: JSON
            # numbers cost ~10x their binary size to parse; big tensors go in .npy.
            limit = self.limits.max_input_json_bytes
            if source.size > limit:
                raise InvalidRequest(
                    f"Input file '{source.name}' is larger than {limit} bytes; store large tensors as .npy"
                )
            try:
                parsed = json.loads(source.read())
            except (ValueError, RecursionError):
                raise InvalidRequest(f"Input file '{source.name}' is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise InvalidRequest(
                    f"Input file '{source.name}' must hold a JSON object mapping input names to arrays; "
                    f"{self.signature()}"
                )
            return parsed
        raise InvalidRequest(f"Input file '{source.name}' must be .json or .npy to feed an ONNX model")

    def _array(self, spec: TensorSpec, value: Any, budget: int) -> Any:
        import numpy as np

        if spec.dtype is None:
            raise InvalidRequest(f"Input {spec.describe()} has a type this service cannot feed")
        if isinstance(value, _NpyArray):
            array = value.array(spec, budget, self.limits.max_tensor_elements)
        else:
            if isinstance(value, (dict, bytes)) or value is None:
                raise InvalidRequest(f"Input '{spec.name}' must be a nested list of values; {self.signature()}")
            try:
                array = np.asarray(value)
            except (ValueError, TypeError, OverflowError, RecursionError):
                # numpy >= 1.24 refuses ragged nesting outright.
                raise InvalidRequest(
                    f"Input '{spec.name}' is not a rectangular array (ragged or mixed nesting); {self.signature()}"
                ) from None
            if array.size > budget:
                raise _too_large(spec, budget, self.limits.max_tensor_elements)
        return _cast(spec, array, self.signature)

    def _check_shape(self, spec: TensorSpec, shape: tuple[int, ...], symbols: dict[str, tuple[int, str]]) -> None:
        if spec.shape is None:
            return
        got = "[" + ", ".join(map(str, shape)) + "]"
        if len(shape) != len(spec.shape):
            raise InvalidRequest(f"Input '{spec.name}' has rank {len(shape)} (shape {got}); {self.signature()}")
        for axis, (want, have) in enumerate(zip(spec.shape, shape)):
            if isinstance(want, int) and want >= 0 and want != have:
                raise InvalidRequest(
                    f"Input '{spec.name}' has shape {got}, dimension {axis} must be {want}; {self.signature()}"
                )
            if isinstance(want, str) and want:
                # Inputs that share a symbolic dimension must agree on it.
                seen = symbols.setdefault(want, (have, spec.name))
                if seen[0] != have:
                    raise InvalidRequest(
                        f"Dimension '{want}' is {seen[0]} in input '{seen[1]}' but {have} in "
                        f"input '{spec.name}'; {self.signature()}"
                    )


def deadline_error(budget: float, limits: Limits, waited: float | None = None) -> InferenceTimeout:
    """The TIMEOUT error for a run stopped by the clock, naming which clock."""
    if waited is not None and waited >= budget:
        return InferenceTimeout(
            f"Inference ran longer than {limits.predict_timeout_seconds:g} s (PREDICT_TIMEOUT_SECONDS) and was stopped"
        )
    return InferenceTimeout("Inference was stopped at the request's deadline")


@dataclass
class _BytesInput:
    """An in-memory input file (tests, and callers that already hold the bytes)."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def head(self, n: int) -> bytes:
        return self.data[:n]

    def read(self) -> bytes:
        return self.data


# numpy's own cap on .npy header length (format.py), plus magic and length fields.
_NPY_HEAD = 10_000 + 12
_NPY_KINDS = "biufU"


class _NpyArray:
    """An .npy input: the header is checked before the body is read."""

    def __init__(self, source: InputFile) -> None:
        self.source = source

    def array(self, spec: TensorSpec, budget: int, limit: int) -> Any:
        """The array, after its header passed every check (else InvalidRequest)."""
        import io

        import numpy as np

        stream = io.BytesIO(self.source.head(_NPY_HEAD))
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, TypeError, ...
            raise InvalidRequest(f"The .npy input is not a valid NumPy array file ({scrub(str(exc))})") from None
        if (
            not isinstance(shape, tuple)
            or not all(type(d) is int and d >= 0 for d in shape)
            or not isinstance(fortran, bool)
            or len(shape) > 32
        ):
            raise InvalidRequest(
                "The .npy input has an invalid header: shape must be a tuple of at most 32 "
                "non-negative integers and fortran_order a boolean"
            )
        if dtype.hasobject:
            raise InvalidRequest("The .npy input holds Python objects; only numeric and string arrays are accepted")
        if dtype.kind not in _NPY_KINDS or dtype.subdtype is not None or dtype.names is not None or dtype.itemsize == 0:
            raise InvalidRequest(
                f"The .npy input has dtype {str(dtype)[:40]!r}; only booleans, numbers and strings are accepted"
            )
        count = 1
        for dim in shape:
            count *= dim  # Python ints: no overflow
        if count > budget:
            raise _too_large(spec, budget, limit)
        offset = stream.tell()
        if self.source.size - offset != count * dtype.itemsize:
            raise InvalidRequest(
                f"The .npy input is truncated or padded: its header announces shape {list(shape)} {dtype}"
            )
        data = self.source.read()
        if len(data) != offset + count * dtype.itemsize:
            raise InvalidRequest("The .npy input changed while it was read")
        try:
            flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
            return flat.reshape(shape, order="F" if fortran else "C")
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"The .npy input is not a valid NumPy array file ({scrub(str(exc))})") from None


def _spec(arg: Any) -> TensorSpec:
    shape = arg.shape
    dims = None if shape is None else tuple(d if isinstance(d, int) or d is None else str(d) for d in shape)
    return TensorSpec(arg.name, arg.type, _DTYPES.get(arg.type), dims)


def _cast(spec: TensorSpec, array: Any, signature: Any) -> Any:
    """``array`` as ``spec.dtype``, refusing casts that change meaning."""
    import numpy as np

    target = np.dtype(spec.dtype)
    kind = array.dtype.kind
    if kind in "SU" and target.kind == "U":
        return array.astype(object) if kind == "S" else array
    if kind not in _ACCEPTS[target.kind]:
        found = "non-numeric or out-of-range values" if kind in "OSUV" else f"{array.dtype} values"
        raise InvalidRequest(
            f"Input '{spec.name}' must hold {_KIND_WORDS[target.kind]} ({spec.dtype}), got {found}; {signature()}"
        )
    if array.dtype == target:
        return np.asarray(array, order="C")  # ascontiguousarray would turn 0-d into 1-d
    if target.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (np.mod(array, 1) == 0)):
            raise InvalidRequest(
                f"Input '{spec.name}' must hold integers ({spec.dtype}), got fractional numbers; {signature()}"
            )
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidRequest(f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        cast = array.astype(target)
    if target.kind == "f" and kind == "f" and target.itemsize < array.dtype.itemsize:
        # float64 -> float32 turns values beyond the range into inf silently.
        if not np.array_equal(np.isfinite(cast), np.isfinite(array)):
            raise InvalidRequest(f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    return np.asarray(cast, order="C")


def _too_large(spec: TensorSpec, budget: int, limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"Inputs are too large: at most {limit} elements per request (MAX_TENSOR_ELEMENTS); "
        f"input '{spec.name}' exceeds the {max(budget, 0)} left"
    )


def _tensor_json(value: Any) -> dict[str, Any]:
    import numpy as np

    if isinstance(value, np.ndarray):
        out = {"data": value.tolist(), "shape": list(value.shape), "dtype": str(value.dtype)}
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            # JSON has no NaN/Infinity (strict parsers reject Python's
            # spelling): such values are null, with their positions flagged.
            # numpy's stubs lack None as a fill value (it gives an object array).
            out["data"] = np.where(np.isfinite(value), value, None).tolist()  # type: ignore[call-overload]
            out["nonFinite"] = True
        return out
    # Sequence or map outputs (e.g. classifier probabilities): plain JSON.
    return {"data": _plain(value), "shape": None, "dtype": type(value).__name__}


def _plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _output_size(value: Any, element_limit: int, text_limit: int) -> tuple[int, int]:
    """Elements and characters of text in outputs (tensors, sequences, maps),
    counted without copying and stopping as soon as either limit is passed."""
    import numpy as np

    elements = text = 0
    pending = [value]
    while pending and elements <= element_limit and text <= text_limit:
        item = pending.pop()
        if isinstance(item, np.ndarray):
            elements += item.size
            if item.dtype.kind in "OUS" and elements <= element_limit:
                text += sum(len(str(v)) for v in item.flat)
        elif isinstance(item, dict):
            elements += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            elements += 0 if item is value else len(item)
            pending.extend(item)
        elif isinstance(item, (str, bytes)):
            elements += 1
            text += len(item)
        else:
            elements += 1
    return elements, text


def load(model: LoadedModel) -> OnnxRunner:
    """Build the runner; a file onnxruntime cannot load is ProcessingFailed naming
    the model, one it must not load (external data, too big) is ModelRefused."""
    session, footprint = create_session(model)
    return OnnxRunner(model_name(model), session, footprint, model.limits)
