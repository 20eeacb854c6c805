"""Tensor datatypes: the Open Inference Protocol's names, ONNX's and numpy's.

One table, shared by the signature recorded at ingest, the codecs of every
edge (``/predict``, ``/v2``, jobs) and the runners. numpy dtypes are kept as
names (strings) so that importing this module never imports numpy.

The OIP datatypes are those of the KServe V2 / Triton REST protocol; every
one that ONNX has is here. ONNX ``bfloat16`` and the float8 types have no
OIP name and no numpy dtype: a model using them on an input or output is
described (``onnxType``) but cannot be fed through the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Datatype:
    """One tensor element type under its three names."""

    oip: str
    """The protocol's name (``FP32``)."""
    onnx: str
    """onnxruntime's type string (``tensor(float)``)."""
    onnx_elem: int
    """ONNX ``TensorProto.DataType`` enum value (``1``)."""
    numpy: str
    """numpy dtype name (``float32``); ``object`` for BYTES (strings)."""
    itemsize: int
    """Bytes per element in the raw (binary) encoding; 0 for BYTES (length-prefixed)."""


DATATYPES: tuple[Datatype, ...] = (
    Datatype("BOOL", "tensor(bool)", 9, "bool", 1),
    Datatype("UINT8", "tensor(uint8)", 2, "uint8", 1),
    Datatype("UINT16", "tensor(uint16)", 4, "uint16", 2),
    Datatype("UINT32", "tensor(uint32)", 12, "uint32", 4),
    Datatype("UINT64", "tensor(uint64)", 13, "uint64", 8),
    Datatype("INT8", "tensor(int8)", 3, "int8", 1),
    Datatype("INT16", "tensor(int16)", 5, "int16", 2),
    Datatype("INT32", "tensor(int32)", 6, "int32", 4),
    Datatype("INT64", "tensor(int64)", 7, "int64", 8),
    Datatype("FP16", "tensor(float16)", 10, "float16", 2),
    Datatype("FP32", "tensor(float)", 1, "float32", 4),
    Datatype("FP64", "tensor(double)", 11, "float64", 8),
    Datatype("BYTES", "tensor(string)", 8, "object", 0),
)

BY_OIP = {d.oip: d for d in DATATYPES}
BY_ONNX = {d.onnx: d for d in DATATYPES}
BY_ONNX_ELEM = {d.onnx_elem: d for d in DATATYPES}
# numpy dtype name -> datatype; numpy's str dtypes ('<U5', '|S3') map to BYTES.
BY_NUMPY = {d.numpy: d for d in DATATYPES}


def of_numpy(dtype_name: str, kind: str) -> Datatype | None:
    """The datatype of a numpy dtype, given its name and kind (``U``/``S``/``O`` are BYTES)."""
    if kind in "USO":
        return BY_OIP["BYTES"]
    return BY_NUMPY.get(dtype_name)
