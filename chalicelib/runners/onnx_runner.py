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
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from chalicelib.config import get_settings
from chalicelib.errors import InvalidRequest, ProcessingFailed
from chalicelib.runners import LoadedModel, Runner

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
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class TensorSpec:
    """One declared input: its name, numpy dtype (or None) and shape."""

    name: str
    onnx_type: str
    dtype: str | None
    shape: tuple[int | str | None, ...] | None  # None: rank unknown

    def describe(self) -> str:
        dims = "any shape" if self.shape is None else "[" + ", ".join(
            str(d) if d is not None else "?" for d in self.shape) + "]"
        return f"'{self.name}' {self.dtype or self.onnx_type} {dims}"


def session_options() -> Any:
    """Session options suited to a Lambda: one request at a time, every vCPU
    for the operators of that request, and the default memory planning."""
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
    options.log_severity_level = 3  # errors only: shape warnings are ours to report
    return options


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def create_session(model: LoadedModel, options: Any) -> Any:
    """An InferenceSession over the model file, verified by the cache's reader.

    Where the reader offers a path to the very file it holds, onnxruntime
    reads it itself (one copy fewer than from bytes) while the reader hashes
    it in parallel. The path is reached through a symlink in a private empty
    directory, so a model naming external data files finds none. A file
    onnxruntime cannot load is ProcessingFailed naming the model.
    """
    import onnxruntime as ort

    name = model_name(model)
    providers = ["CPUExecutionProvider"]
    native = getattr(model.file, "native_path", None)
    path = native() if native is not None else None
    private = tempfile.mkdtemp(prefix="onnx-") if path is not None else None
    try:
        if path is None:
            return ort.InferenceSession(model.file.read(), options, providers=providers)
        assert private is not None  # made above whenever there is a path
        link = os.path.join(private, "model.onnx")
        os.symlink(path, link)
        return ort.InferenceSession(link, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
        reason = _reason(exc)
        if private is not None:
            reason = reason.replace(os.path.join(private, "model.onnx"), "the file")  # no server paths
        raise ProcessingFailed(f"Model '{name}' is not a loadable ONNX model ({reason})") from None
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def model_name(model: LoadedModel) -> str:
    """The model's name as clients wrote it (``mlp.onnx``)."""
    return model.manifest.key.split("/", 1)[-1]


class OnnxRunner(Runner):
    """A loaded InferenceSession plus the signature requests are checked against."""

    def __init__(self, name: str, session: Any, nbytes: int) -> None:
        self.name = name
        self.session = session
        self.nbytes = nbytes
        self.inputs = [_spec(i) for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def signature(self) -> str:
        """What the model expects, for error messages."""
        return f"model '{self.name}' expects inputs " + "; ".join(s.describe() for s in self.inputs)

    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        """Validate ``inputs`` against the signature, run, return named outputs."""
        feeds = self.feeds(inputs, input_source)
        try:
            results = self.session.run(self.output_names, feeds)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no useful base
            # What validation cannot see (e.g. inner dims that disagree
            # inside the graph) is still the caller's input, not our fault.
            raise InvalidRequest(f"The model rejected the inputs ({_reason(exc)}); {self.signature()}") from None
        return {name: _tensor_json(value) for name, value in zip(self.output_names, results)}

    def feeds(self, inputs: Any, input_source: str | None) -> dict[str, Any]:
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
        budget = get_settings().max_tensor_elements
        feeds: dict[str, Any] = {}
        symbols: dict[str, tuple[int, str]] = {}
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
            return self._from_file(bytes(inputs), input_source or "")
        if not isinstance(inputs, dict):
            raise InvalidRequest(f"'inputs' must be a JSON object mapping input names to arrays; {self.signature()}")
        return inputs

    def _from_file(self, data: bytes, source: str) -> dict[str, Any]:
        lowered = source.lower()
        if lowered.endswith(".npy"):
            if len(self.inputs) != 1:
                raise InvalidRequest(
                    f"An .npy input holds one unnamed array, but {self.signature()}; "
                    "use a .json input file naming each input")
            return {self.inputs[0].name: _NpyArray(data)}
        if lowered.endswith(".json"):
            # Same shape and the same size limit as an inline body: JSON
            # numbers cost ~10x their binary size to parse; big tensors go in .npy.
            limit = get_settings().max_request_bytes
            if len(data) > limit:
                raise InvalidRequest(
                    f"Input file '{source}' is larger than {limit} bytes; store large tensors as .npy")
            try:
                parsed = json.loads(data)
            except (ValueError, RecursionError):
                raise InvalidRequest(f"Input file '{source}' is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise InvalidRequest(
                    f"Input file '{source}' must hold a JSON object mapping input names to arrays; "
                    f"{self.signature()}")
            return parsed
        raise InvalidRequest(f"Input file '{source}' must be .json or .npy to feed an ONNX model")

    def _array(self, spec: TensorSpec, value: Any, budget: int) -> Any:
        import numpy as np

        if spec.dtype is None:
            raise InvalidRequest(f"Input {spec.describe()} has a type this service cannot feed")
        if isinstance(value, _NpyArray):
            array = value.array(spec, budget)
        else:
            if isinstance(value, (dict, bytes)) or value is None:
                raise InvalidRequest(f"Input '{spec.name}' must be a nested list of values; {self.signature()}")
            try:
                array = np.asarray(value)
            except (ValueError, TypeError, OverflowError, RecursionError):
                # numpy >= 1.24 refuses ragged nesting outright.
                raise InvalidRequest(
                    f"Input '{spec.name}' is not a rectangular array (ragged or mixed nesting); "
                    f"{self.signature()}") from None
            if array.size > budget:
                raise _too_large(spec, budget)
        return _cast(spec, array, self.signature)

    def _check_shape(self, spec: TensorSpec, shape: tuple[int, ...], symbols: dict[str, tuple[int, str]]) -> None:
        if spec.shape is None:
            return
        got = "[" + ", ".join(map(str, shape)) + "]"
        if len(shape) != len(spec.shape):
            raise InvalidRequest(
                f"Input '{spec.name}' has rank {len(shape)} (shape {got}); {self.signature()}")
        for axis, (want, have) in enumerate(zip(spec.shape, shape)):
            if isinstance(want, int) and want >= 0 and want != have:
                raise InvalidRequest(
                    f"Input '{spec.name}' has shape {got}, dimension {axis} must be {want}; {self.signature()}")
            if isinstance(want, str) and want:
                # Inputs that share a symbolic dimension must agree on it.
                seen = symbols.setdefault(want, (have, spec.name))
                if seen[0] != have:
                    raise InvalidRequest(
                        f"Dimension '{want}' is {seen[0]} in input '{seen[1]}' but {have} in "
                        f"input '{spec.name}'; {self.signature()}")


class _NpyArray:
    """An .npy payload, parsed only once the target input is known."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def array(self, spec: TensorSpec, budget: int) -> Any:
        """A zero-copy view of the payload after checking its header."""
        import io

        import numpy as np

        stream = io.BytesIO(self.data)
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except ValueError as exc:
            raise InvalidRequest(f"The .npy input is not a valid NumPy array file ({_reason(exc)})") from None
        if dtype.hasobject:
            raise InvalidRequest("The .npy input holds Python objects; only numeric and string arrays are accepted")
        count = 1
        for dim in shape:
            count *= dim
        if count > budget:
            raise _too_large(spec, budget)
        offset = stream.tell()
        if len(self.data) - offset != count * dtype.itemsize:
            raise InvalidRequest(
                f"The .npy input is truncated or padded: its header announces shape {list(shape)} {dtype}")
        flat = np.frombuffer(self.data, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape, order="F" if fortran else "C")


def _spec(arg: Any) -> TensorSpec:
    shape = arg.shape
    dims = None if shape is None else tuple(
        d if isinstance(d, int) or d is None else str(d) for d in shape)
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
            f"Input '{spec.name}' must hold {_KIND_WORDS[target.kind]} ({spec.dtype}), "
            f"got {found}; {signature()}")
    if array.dtype == target:
        return np.asarray(array, order="C")  # ascontiguousarray would turn 0-d into 1-d
    if target.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (np.mod(array, 1) == 0)):
            raise InvalidRequest(
                f"Input '{spec.name}' must hold integers ({spec.dtype}), got fractional numbers; {signature()}")
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidRequest(
                f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked just below
        cast = array.astype(target)
    if target.kind == "f" and kind == "f" and target.itemsize < array.dtype.itemsize:
        # float64 -> float32 turns values beyond the range into inf silently.
        if not np.array_equal(np.isfinite(cast), np.isfinite(array)):
            raise InvalidRequest(
                f"Input '{spec.name}' has values outside the {spec.dtype} range; {signature()}")
    return np.asarray(cast, order="C")


def _too_large(spec: TensorSpec, budget: int) -> InvalidRequest:
    limit = get_settings().max_tensor_elements
    return InvalidRequest(
        f"Inputs are too large: at most {limit} elements per request (MAX_TENSOR_ELEMENTS); "
        f"input '{spec.name}' exceeds the {max(budget, 0)} left")


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


def _reason(exc: BaseException) -> str:
    """The last line of an error (onnxruntime puts its reason there), bounded."""
    text = str(exc).strip().splitlines()
    line = text[-1] if text else type(exc).__name__
    return line[:_MESSAGE_LIMIT]


def load(model: LoadedModel) -> OnnxRunner:
    """Build the runner; a file onnxruntime cannot load is ProcessingFailed naming the model."""
    session = create_session(model, session_options())
    # onnxruntime holds the initializers (the bulk of any model) once.
    return OnnxRunner(model_name(model), session, model.manifest.size)
