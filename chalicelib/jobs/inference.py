"""The one seam between batch jobs and inference: arrays in, arrays out.

Blocks never go through JSON: the rows a worker mapped from the store are
fed to the runner as numpy arrays and its outputs come back as arrays.
It calls the shared inference use case (``chalicelib/inference.py``) that
``/predict`` and ``/v2`` infer call: the same resolution (versions
included), the same checks and the same bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest
from chalicelib.names import ObjectRef
from chalicelib.store import Store

if TYPE_CHECKING:
    import numpy

    from chalicelib.model_cache import ModelCache


@dataclass(frozen=True)
class Inferred:
    """One block's outputs (by name, in the model's declared order) and the
    model they came from."""

    outputs: dict[str, numpy.ndarray]
    model_sha256: str
    model_version: int


def infer_rows(
    store: Store,
    settings: Settings,
    models: ModelCache,
    model_ref: ObjectRef,
    version: int | None,
    rows: numpy.ndarray,
    outputs: tuple[str, ...] | None = None,
) -> Inferred:
    """Run ``model_ref`` on ``rows`` (the model's single input, batch axis
    first) and return the requested outputs (all of them by default).

    ``version``: ``None`` is the current one, else a kept version (404 otherwise).
    Bad rows raise InvalidRequest naming what the model expects.
    """
    from chalicelib import inference

    cached, _ = inference.resolve(models, store, model_ref, version)
    runner = cached.runner
    if not runner.takes_inputs:
        raise InvalidRequest(f"Model '{model_ref.name}' takes no inputs (an opaque file): jobs run ONNX models")
    signature = runner.metadata()
    if len(signature.inputs) != 1:
        names = ", ".join(repr(t.name) for t in signature.inputs)
        raise InvalidRequest(f"An .npy input holds one unnamed array, but model '{model_ref.name}' takes {names}")
    # The same checks and bounds as /v2 infer: the signature, MAX_TENSOR_ELEMENTS,
    # MAX_OUTPUT_ELEMENTS before the run where the declared shapes tell, after it otherwise.
    results = inference.infer(cached, {signature.inputs[0].name: rows}, list(outputs) if outputs is not None else None)
    return Inferred(results, cached.manifest.sha256, cached.manifest.version)
