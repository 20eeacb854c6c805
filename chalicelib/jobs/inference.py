"""The one seam between batch jobs and inference: arrays in, arrays out.

Blocks never go through JSON: the rows a worker mapped from the store are
fed to the runner as numpy arrays and its outputs come back as arrays.
Today this sits on the warm model cache and ``OnnxRunner`` (its ``feeds``
checks and its bounded ``_run``); at merge it is rewired to the shared
inference use case (``chalicelib/inference.py``) that ``/predict`` and
``/v2`` infer call, without changing its callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.names import ObjectRef
from chalicelib.store import Store

if TYPE_CHECKING:
    import numpy


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
    model_ref: ObjectRef,
    version: int | None,
    rows: numpy.ndarray,
    outputs: tuple[str, ...] | None = None,
) -> Inferred:
    """Run ``model_ref`` on ``rows`` (the model's single input, batch axis
    first) and return the requested outputs (all of them by default).

    ``version``: ``None`` is the current one; any other than the current is
    404 until the store keeps versions (the contract of the model server).
    Bad rows raise InvalidRequest naming what the model expects.
    """
    from chalicelib.predict import model_cache, record_model_lookup

    cached, hit = model_cache().get(store, model_ref)
    record_model_lookup(hit, cached.load_ms)
    if version is not None and version != cached.manifest.version:
        raise NotFound(None, f"Model '{model_ref.name}' has no version {version} on the store")
    runner: Any = cached.runner
    if not hasattr(runner, "feeds"):
        raise InvalidRequest(f"Model '{model_ref.name}' is not an ONNX model: jobs run ONNX models")
    if len(runner.inputs) != 1:
        raise InvalidRequest(f"An .npy input holds one unnamed array, but {runner.signature()}")
    symbols: dict[str, tuple[int, str]] = {}
    feeds = runner.feeds({runner.inputs[0].name: rows}, None, symbols)
    # A block's outputs are bounded as one /predict's are (MAX_OUTPUT_ELEMENTS):
    # before the run where the declared shapes tell, after it otherwise.
    runner._check_declared_outputs(symbols)
    names = list(outputs) if outputs is not None else list(runner.output_names)
    unknown = [n for n in names if n not in runner.output_names]
    if unknown:
        raise InvalidRequest(
            f"Model '{model_ref.name}' has no output(s) {', '.join(map(repr, unknown))}; "
            f"it has {', '.join(map(repr, runner.output_names))}"
        )
    results = runner._run(feeds)
    runner._check_outputs(results)
    by_name = dict(zip(runner.output_names, results))
    return Inferred({n: by_name[n] for n in names}, cached.manifest.sha256, cached.manifest.version)
