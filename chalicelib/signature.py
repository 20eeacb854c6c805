"""A model's signature: what it takes and returns, recorded with its manifest.

Read once, at ingest, from the model itself, and kept in the manifest's
``signature`` field as the JSON below, so that ``GET /models/{name}`` and
the protocol's model metadata answer without loading the model::

    {"platform": "onnxruntime_onnx",
     "inputs":  [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224],
                  "onnxType": "tensor(float)"}],
     "outputs": [{"name": "probabilities", "datatype": null, "shape": null,
                  "onnxType": "seq(map(int64,tensor(float)))"}],
     "opsets": {"": 17, "ai.onnx.ml": 3}}

* ``datatype`` is the Open Inference Protocol's name (:mod:`chalicelib.datatypes`),
  or ``null`` for what is not a tensor (ONNX-ML's sequences of maps) or has no
  OIP name (bfloat16): ``onnxType`` then says what it is, honestly.
* ``shape`` uses -1 for a dynamic (symbolic or unknown) dimension; ``null`` when
  even the rank is unknown or the value is not a tensor.
* ``platform`` is ``onnxruntime_onnx`` for ONNX models (Triton's name) and
  ``opaque`` for files served with the seed's checksum result (no inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ONNX_PLATFORM = "onnxruntime_onnx"
OPAQUE_PLATFORM = "opaque"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a model."""

    name: str
    datatype: str | None
    shape: tuple[int, ...] | None
    onnx_type: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": None if self.shape is None else list(self.shape),
            "onnxType": self.onnx_type,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TensorInfo:
        shape = doc.get("shape")
        return cls(
            name=str(doc["name"]),
            datatype=doc.get("datatype"),
            shape=None if shape is None else tuple(int(d) for d in shape),
            onnx_type=str(doc.get("onnxType") or ""),
        )


@dataclass(frozen=True)
class Signature:
    """A model's platform, inputs, outputs and (ONNX) opset imports."""

    platform: str
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    opsets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "opsets": dict(self.opsets),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Signature:
        return cls(
            platform=str(doc["platform"]),
            inputs=tuple(TensorInfo.from_json(t) for t in doc.get("inputs") or ()),
            outputs=tuple(TensorInfo.from_json(t) for t in doc.get("outputs") or ()),
            opsets={str(k): int(v) for k, v in (doc.get("opsets") or {}).items()},
        )


OPAQUE = Signature(OPAQUE_PLATFORM)
