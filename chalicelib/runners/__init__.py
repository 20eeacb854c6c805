"""Model runners: one module per model format behind one small interface.

A runner module exposes ``load(model: LoadedModel) -> Runner``. The format is
chosen by file suffix; modules are imported on first use so that ``import
app`` never pays for an ML runtime. Adding a format is one new module and
one line in ``_BY_SUFFIX``.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, BinaryIO

from chalicelib.store import Manifest

_BY_SUFFIX = {
    ".onnx": "chalicelib.runners.onnx_runner",
}
_DEFAULT = "chalicelib.runners.opaque"


@dataclass
class LoadedModel:
    """What a runner module gets: the manifest and an open, verified-on-read file."""

    manifest: Manifest
    file: BinaryIO


class Runner(ABC):
    """A model ready to answer predictions, kept warm between invocations."""

    #: approximate memory held by this runner, for the cache's byte budget
    nbytes: int = 0

    @abstractmethod
    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        """Run the model. Bad ``inputs`` raise ``InvalidRequest``."""


def runner_module(model_name: str) -> Any:
    """The runner module for a model file name (imported lazily)."""
    lowered = model_name.lower()
    for suffix, module in _BY_SUFFIX.items():
        if lowered.endswith(suffix):
            return importlib.import_module(module)
    return importlib.import_module(_DEFAULT)
