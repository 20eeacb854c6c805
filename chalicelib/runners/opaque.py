"""The seed's runner for files of unknown format: size and checksum.

It proves the model was read whole and intact from the shared store,
without interpreting it. The file is streamed, never held in memory. It
takes no inputs: a request that sends some is refused (400), rather than
answered with a checksum that ignores them.
"""

from __future__ import annotations

from typing import Any

from chalicelib.errors import InvalidRequest
from chalicelib.runners import LoadedModel, Runner
from chalicelib.signature import OPAQUE, Signature

_CHUNK = 1024 * 1024


class OpaqueRunner(Runner):
    """Answers ``{modelSize, checksum, processed}`` for a verified file."""

    nbytes = 0
    takes_inputs = False

    def __init__(self, size: int, checksum: str, name: str = "") -> None:
        self.size = size
        self.checksum = checksum
        self.name = name

    def predict(self, inputs: Any, input_source: str | None = None) -> dict[str, Any]:
        if inputs is not None:
            raise InvalidRequest(
                f"Model '{self.name}' is not a format this service runs (it is stored as opaque bytes, "
                "answered with their checksum) and takes no inputs: send the request without "
                "'inputs' or 'input', or ingest the model as ONNX"
            )
        return {"modelSize": self.size, "checksum": self.checksum, "processed": True}

    def metadata(self) -> Signature:
        return OPAQUE

    def infer(self, feeds: dict[str, Any], output_names: list[str] | None = None) -> dict[str, Any]:
        # A file of unknown format takes no tensors: feeding it is the client's mistake.
        raise InvalidRequest(
            "This model is not in a format the service can run (platform 'opaque'): it takes no inputs; "
            "POST /predict without inputs answers its size and checksum"
        )


def load(model: LoadedModel) -> OpaqueRunner:
    """Read the file through (the loader verifies the hash) and keep its facts."""
    while model.file.read(_CHUNK):
        pass
    return OpaqueRunner(model.manifest.size, model.manifest.sha256, model.manifest.key.split("/", 1)[-1])
