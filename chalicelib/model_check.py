"""What a model's bytes are, and whether they can run here: decided once, at ingest.

:func:`describe` is the ingest's validate-and-describe step. It looks at the
bytes, never the name's suffix, except to refuse a ``.onnx`` that is not ONNX:

* an ONNX model (a well-formed ``ModelProto`` with a graph) is checked far
  enough to know the shipped onnxruntime can load it: the whole protobuf
  walks cleanly within the scan's bounds, no tensor names external data,
  the IR version and every opset import are within what onnxruntime
  supports (:mod:`onnx_support`). Its signature is read from the bytes
  (:mod:`onnx_signature`). Format ``onnx``.
* a file in a model format that cannot run here (a PyTorch checkpoint, a
  Keras or TFLite model, a Python pickle) is refused with what to do
  instead: export it to ONNX.
* anything else is ``opaque``: the seed's checksum runner serves it, and it
  takes no inputs.

No onnxruntime and no ``onnx`` package: a bounded walk of the protobuf wire
format, over a buffer read in place (a mapping of the file just written).
"""

from __future__ import annotations

import io
import mmap
import os
from collections.abc import Buffer
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chalicelib.errors import ModelInvalid
from chalicelib.names import ObjectRef
from chalicelib.runners import onnx_scan, onnx_signature, onnx_support
from chalicelib.signature import ONNX_PLATFORM, OPAQUE, Signature
from chalicelib.store import Manifest, Store

ONNX = "onnx"
OPAQUE_FORMAT = "opaque"

_TORCH_EXPORT = (
    "export it to ONNX with torch.onnx.export(model, args, 'model.onnx', external_data=False) "
    "(or dynamo=False), which keeps the weights inside the .onnx file, and ingest that file"
)
_OTHER_EXPORT = (
    "convert it to a single .onnx file (tf2onnx for Keras/TensorFlow, skl2onnx for scikit-learn) and ingest that"
)
# legacy torch.save: a pickle of the magic number 0x1950a86a20f9469cfc6c (protocol 2, LONG1 of 10 bytes).
_TORCH_LEGACY = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_HDF5 = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Description:
    """A model's format and signature, as the manifest records them."""

    format: str
    signature: Signature
    scan: onnx_scan.ScanReport | None = None

    def manifest_fields(self) -> dict[str, Any]:
        """The manifest's ``format``, ``signature`` and ``scan`` fields."""
        scan = self.scan.to_json() if self.scan is not None else None
        return {"format": self.format, "signature": self.signature.to_json(), "scan": scan}


def describe(name: str, data: Buffer) -> Description:
    """Validate and describe the model ``name`` from its bytes; :class:`ModelInvalid` if it cannot run here."""
    with memoryview(data) as view:
        return _describe(name, view)


def _describe(name: str, data: memoryview) -> Description:
    foreign = _foreign_format(data)
    if foreign is not None:
        what, fix = foreign
        raise ModelInvalid(f"Model '{name}' is {what}, which this service cannot run: {fix}")
    try:
        ir_version, signature = onnx_signature.read_signature(data)
        if not signature.outputs:
            raise onnx_scan.ScanError("declares no outputs")
    except onnx_scan.ScanError as exc:
        if name.lower().endswith(".onnx"):
            raise ModelInvalid(f"Model '{name}' is not an ONNX model (the file {exc})") from None
        return Description(OPAQUE_FORMAT, OPAQUE)
    try:
        # Recorded beside the bytes' sha256: a load of these bytes skips its own walk.
        report = onnx_scan.scan(data)
    except onnx_scan.ExternalData:
        raise ModelInvalid(
            f"Model '{name}' keeps tensor data outside the model file (external data, such as the "
            "'model.onnx.data' that torch.onnx.export writes by default), which this service does not read: "
            "re-export with torch.onnx.export(..., external_data=False) (or dynamo=False), or embed the "
            "tensors with onnx.save_model(model, path, save_as_external_data=False)"
        ) from None
    except onnx_scan.ScanError as exc:
        raise ModelInvalid(f"Model '{name}' is not a loadable ONNX model (the file {exc})") from None
    reasons = onnx_support.unsupported(ir_version, signature.opsets)
    if reasons:
        raise ModelInvalid(f"Model '{name}' needs " + "; ".join(reasons) + ": export it for an older opset")
    return Description(ONNX, signature, report)


def _foreign_format(data: memoryview) -> tuple[str, str] | None:
    """(what it is, what to do) for a model format that does not run here, else ``None``."""
    head = bytes(data[:64])
    if head.startswith(b"PK\x03\x04"):
        names = _zip_names(data)
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "a PyTorch checkpoint (torch.save)", _TORCH_EXPORT
        if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):
            return "a TorchScript archive (torch.jit.save)", _TORCH_EXPORT
        if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
            return "a Keras model (.keras)", _OTHER_EXPORT
        return None
    if head.startswith(_TORCH_LEGACY):
        return "a PyTorch checkpoint (torch.save, legacy format)", _TORCH_EXPORT
    if head.startswith(_HDF5):
        return "an HDF5 file (a Keras .h5 model?)", _OTHER_EXPORT
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model", _OTHER_EXPORT
    # A pickle (joblib, pickle.dump of a scikit-learn model): protocol 2-5
    # header, and STOP as its last opcode.
    if len(data) >= 3 and head[0] == 0x80 and 2 <= head[1] <= 5 and data[-1] == ord("."):
        if head[1] < 4 or head[2] == 0x95:  # protocol 4+ opens with a FRAME
            return "a Python pickle", _OTHER_EXPORT
    return None


def _zip_names(data: memoryview) -> set[str]:
    # The central directory sits at the end: zipfile seeks there and reads
    # only it, through a file over the buffer (no copy of the archive).
    # Imported here: only zip uploads pay for it, not every cold start.
    import zipfile

    try:
        with zipfile.ZipFile(_ViewFile(data)) as archive:
            return set(archive.namelist()[:10_000])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return set()


class _ViewFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, reading it in place."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._pos : self._pos + len(buffer)]
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        self._pos += n
        return n


def recorded(store: Store, ref: ObjectRef, manifest: Manifest) -> Description:
    """A stored model's format and signature: as its manifest recorded them at
    ingest or, for a model stored before they were recorded, read now from
    the stored bytes (once per content, kept in the process), under the rule
    that model is still served by: its suffix (``.onnx`` runs as ONNX).
    Nothing is written back: re-ingesting the model records them."""
    if manifest.signature is not None:
        return Description(manifest.format or ONNX, Signature.from_json(manifest.signature))
    return _legacy(store, ref, manifest.sha256)


@lru_cache(maxsize=256)
def _legacy(store: Store, ref: ObjectRef, sha256: str) -> Description:
    if not ref.name.lower().endswith(".onnx"):
        return Description(OPAQUE_FORMAT, OPAQUE)
    try:
        with store.open(ref) as (_, f):
            size = os.fstat(f.fileno()).st_size
            with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as mapping:
                return Description(ONNX, onnx_signature.read_signature(mapping)[1])
    except (OSError, ValueError, onnx_scan.ScanError):
        # Unreadable, empty or not ONNX after all: its first predict says why.
        return Description(ONNX, Signature(ONNX_PLATFORM))
