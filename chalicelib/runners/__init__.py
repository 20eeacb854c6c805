"""Model runners: one module per model format behind one small interface.

A runner module exposes ``load(model: LoadedModel) -> Runner``. The format is
the one the manifest recorded at ingest, decided by content
(``chalicelib.model_check``); a manifest written before formats were
recorded falls back to the file's suffix, the rule it was served under.
Modules are imported on first use so that ``import app`` never pays for an
ML runtime. Adding a format is one new module and one line in
``_BY_FORMAT``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from chalicelib.store import Manifest

if TYPE_CHECKING:
    from chalicelib.config import Settings
    from chalicelib.signature import Signature

_BY_SUFFIX = {
    ".onnx": "chalicelib.runners.onnx_runner",
}
_DEFAULT = "chalicelib.runners.opaque"
_BY_FORMAT = {"onnx": "chalicelib.runners.onnx_runner", "opaque": _DEFAULT}


@dataclass(frozen=True)
class Limits:
    """Every bound a runner enforces, handed to it at load (built from Settings
    at the edge, so no runner reads the environment)."""

    max_tensor_elements: int = 1_000_000
    max_output_elements: int = 1_000_000
    max_input_json_bytes: int = 10 * 1024 * 1024
    max_model_bytes: int = 512 * 1024 * 1024  # one model, loaded
    model_cache_bytes: int = 512 * 1024 * 1024  # every cached model: the worker's size
    inference_memory_bytes: int = 512 * 1024 * 1024
    predict_timeout_seconds: float = 20.0
    max_response_bytes: int = 5 * 1024 * 1024
    load_timeout_seconds: float = 20.0
    max_model_nodes: int = 100_000
    max_model_nesting: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits the settings ask for."""
        return cls(
            max_tensor_elements=settings.max_tensor_elements,
            max_output_elements=settings.max_output_elements,
            max_input_json_bytes=settings.max_request_bytes,
            max_model_bytes=settings.max_model_bytes,
            model_cache_bytes=settings.model_cache_bytes,
            inference_memory_bytes=settings.inference_memory_bytes,
            predict_timeout_seconds=settings.predict_timeout_seconds,
            max_response_bytes=settings.max_response_bytes,
            load_timeout_seconds=settings.model_load_timeout_seconds,
            max_model_nodes=settings.max_model_nodes,
            max_model_nesting=settings.max_model_nesting,
        )


class InputFile(Protocol):
    """A stored input, read only as far as a runner needs it."""

    @property
    def name(self) -> str:
        """The file's name (``batch.npy``): its suffix says its format."""

    @property
    def size(self) -> int:
        """Its size in bytes, from its manifest (nothing read)."""

    def head(self, n: int) -> bytes:
        """Up to ``n`` first bytes (unverified: for headers only)."""

    def read(self) -> bytes:
        """The whole file, verified against its manifest."""


@dataclass
class LoadedModel:
    """What a runner module gets: the manifest, an open, verified-on-read
    file, and the limits it must keep."""

    manifest: Manifest
    file: BinaryIO
    limits: Limits = field(default_factory=Limits)


class Runner(ABC):
    """A model ready to answer predictions, kept warm between invocations
    (as MLServer's ``MLModel``: load, predict, metadata)."""

    #: approximate memory held by this runner, for the cache's byte budget
    nbytes: int = 0
    #: whether the model takes inputs at all (an opaque file does not)
    takes_inputs: bool = True

    @abstractmethod
    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        """Run the model on inline ``inputs`` (JSON), an :class:`InputFile`
        (read lazily, only if needed) or ``None``; JSON-ready outputs for
        ``/predict``. Bad inputs raise ``InvalidRequest``."""

    @abstractmethod
    def metadata(self) -> Signature:
        """What the model takes and returns, read from the loaded model."""

    @abstractmethod
    def infer(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> dict[str, Any]:
        """Run the model on ``feeds`` (input name -> numpy array, checked
        against the signature here); the outputs named (``None``: all, in
        declared order) as numpy arrays or sequences, not JSON. Bad inputs
        or unknown output names raise ``InvalidRequest``."""

    def valid(self) -> bool:
        """Whether this runner can still answer (a runner whose model lived
        in a replaced worker cannot): the model cache reloads it if not."""
        return True


def runner_module(model_name: str, model_format: str | None = None) -> Any:
    """The runner module for a model's recorded format, or (``None``: an
    older manifest) for its file name (imported lazily)."""
    if model_format is not None:
        return importlib.import_module(_BY_FORMAT.get(model_format, _DEFAULT))
    lowered = model_name.lower()
    for suffix, module in _BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return importlib.import_module(module)
    return importlib.import_module(_DEFAULT)
