"""What the shipped onnxruntime can load: IR versions and opsets per domain.

Checked at ingest, from the model's bytes, so that a model this runtime
would refuse is refused then (a 400) rather than at its first predict.
The figures are onnxruntime's own (``ValidateOpsetForDomain`` and the IR
check in ``Model::Model``), pinned here for the version in
``requirements.txt`` and checked against it by
``tests/unit/test_onnx_support.py``, which asks onnxruntime: bump them with
onnxruntime. Domains onnxruntime does not know (custom operators, a
model's own function domains) are not judged here: their operators
resolve, or not, when the session is created.
"""

from __future__ import annotations

ORT_VERSION = "1.32.0"
MAX_IR_VERSION = 14
"""Highest ``ModelProto.ir_version`` onnxruntime accepts."""

MAX_OPSETS: dict[str, int] = {
    # domain ("" is ai.onnx) -> highest version accepted. onnxruntime sets
    # no lower bound (ai.onnx below 7 loads with a "legacy support" warning).
    "": 28,
    "ai.onnx.ml": 5,
    "ai.onnx.training": 1,
    "ai.onnx.preview.training": 1,
    "com.microsoft": 1,
    "com.microsoft.experimental": 1,
    "com.microsoft.nchwc": 1,
    "com.ms.internal.nhwc": 28,
    "org.pytorch.aten": 1,
}


def unsupported(ir_version: int, opsets: dict[str, int]) -> list[str]:
    """Why onnxruntime would refuse a model of this IR version and these opset
    imports, one phrase per reason; empty if it would not."""
    reasons = []
    if ir_version > MAX_IR_VERSION:
        reasons.append(f"IR version {ir_version} (onnxruntime {ORT_VERSION} reads up to {MAX_IR_VERSION})")
    for domain, version in sorted(opsets.items()):
        highest = MAX_OPSETS.get(domain)
        if highest is not None and version > highest:
            name = domain or "ai.onnx"
            reasons.append(f"opset {version} of domain '{name}' (onnxruntime {ORT_VERSION} supports up to {highest})")
    return reasons
