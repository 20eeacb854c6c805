"""The format-neutral half of a tensor model's runner: signature checks,
element budgets and output limits around one ``_run``.

Inputs, all checked against the model's declared signature before any
inference runs (every mismatch is a 400 naming what the model expects):

* inline ``inputs``: a JSON object mapping each input name to a nested list
  (or a bare number for a rank-0 input);
* a stored ``inputs/<name>.json``: the same object, as a file;
* a stored ``inputs/<name>.npy``: one array, for models with exactly one
  input (an ``.npy`` file carries no input name);
* numpy arrays already decoded by an edge (``/v2``'s JSON and binary tensors).

Casting rules are :mod:`chalicelib.codecs.cast`'s. A format's runner
(``onnx_runner``) subclasses :class:`TensorRunner` and provides ``_run``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from chalicelib.codecs import json_tensors
from chalicelib.codecs.cast import cast, check_shape
from chalicelib.codecs.npy import BytesInput, NpyArray
from chalicelib.codecs.outputs import output_size
from chalicelib.codecs.spec import TensorSpec, too_large
from chalicelib.errors import InvalidRequest, ResourceExhausted
from chalicelib.runners import InputFile, Limits, Runner
from chalicelib.signature import Signature


class TensorRunner(Runner):
    """A runner whose model takes and returns named tensors of declared specs."""

    name: str
    limits: Limits
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    output_names: list[str]
    platform: str = ""

    @abstractmethod
    def _run(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> list[Any]:
        """Execute the model: the named outputs (``None``: all, declared order)."""

    def signature(self) -> str:
        """What the model expects, for error messages."""
        return f"model '{self.name}' expects inputs " + "; ".join(s.describe() for s in self.inputs)

    def metadata(self) -> Signature:
        """The signature as the loaded model declares it (-1 for dynamic dimensions)."""
        return Signature(
            self.platform,
            tuple(s.info() for s in self.inputs),
            tuple(s.info() for s in self.outputs),
        )

    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        """Validate ``inputs`` against the signature, run (bounded in time and
        memory), check the outputs' size, return them as JSON-ready values."""
        symbols: dict[str, tuple[int, str]] = {}
        feeds = self.feeds(inputs, input_source, symbols)
        self._check_declared_outputs(symbols, self.outputs)
        results = self._run(feeds)
        self._check_outputs(results)
        return {name: json_tensors.tensor_json(value) for name, value in zip(self.output_names, results)}

    def infer(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> dict[str, Any]:
        """Run on decoded arrays (checked and cast like any input); the named
        outputs (``None``: all) as numpy values."""
        chosen = self._chosen_outputs(output_names)
        symbols: dict[str, tuple[int, str]] = {}
        checked = self.feeds(feeds, "inline", symbols)
        self._check_declared_outputs(symbols, chosen)
        names = [s.name for s in chosen]
        results = self._run(checked, None if names == self.output_names else names)
        self._check_outputs(results)
        return dict(zip(names, results))

    def _chosen_outputs(self, output_names: list[str] | None) -> list[TensorSpec]:
        if output_names is None:
            return list(self.outputs)
        by_name = {s.name: s for s in self.outputs}
        unknown = [n for n in output_names if n not in by_name]
        if unknown:
            raise InvalidRequest(
                f"Unknown output(s) {', '.join(repr(n[:60]) for n in unknown[:5])}; model '{self.name}' returns "
                + ", ".join(repr(n) for n in self.output_names)
            )
        if len(set(output_names)) != len(output_names):
            raise InvalidRequest("An output is requested twice")
        return [by_name[n] for n in output_names]

    def _check_declared_outputs(self, symbols: dict[str, tuple[int, str]], outputs: list[TensorSpec]) -> None:
        """Refuse before running when the outputs' declared shapes, with the
        inputs' dimensions filled in, already exceed MAX_OUTPUT_ELEMENTS."""
        total = 0
        for spec in outputs:
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
        elements, text = output_size(results, limit, self.limits.max_response_bytes)
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
            check_shape(spec, array.shape, symbols, self.signature)
            feeds[spec.name] = array
        return feeds

    def _named(self, inputs: Any, input_source: str | None) -> dict[str, Any]:
        if inputs is None:
            raise InvalidRequest(f"No inputs: send 'inputs' or a fileId naming an ingested input; {self.signature()}")
        if isinstance(inputs, (bytes, bytearray, memoryview)):
            return self._from_file(BytesInput(input_source or "", bytes(inputs)))
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
            return {self.inputs[0].name: NpyArray(source)}
        if lowered.endswith(".json"):
            return json_tensors.input_object(source, self.limits.max_input_json_bytes, self.signature)
        raise InvalidRequest(f"Input file '{source.name}' must be .json or .npy to feed an ONNX model")

    def _array(self, spec: TensorSpec, value: Any, budget: int) -> Any:
        import numpy as np

        if spec.dtype is None:
            raise InvalidRequest(f"Input {spec.describe()} has a type this service cannot feed")
        if isinstance(value, NpyArray):
            array = value.array(spec, budget, self.limits.max_tensor_elements)
        elif isinstance(value, np.ndarray):
            # Decoded by an edge (``/v2``): no copy unless a cast is needed.
            if value.size > budget:
                raise too_large(spec, budget, self.limits.max_tensor_elements)
            array = value
        else:
            array = json_tensors.nested_array(spec, value, budget, self.limits.max_tensor_elements, self.signature)
        return cast(spec, array, self.signature)
