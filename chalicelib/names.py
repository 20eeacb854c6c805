"""Validation of every name that becomes a path in the store.

Names are one path component from a conservative alphabet. That rules out
traversal (``..``, ``/``, ``\\``), absolute paths, NUL and control
characters, Unicode look-alikes and dot files (where the store keeps its
temp files and metadata) by construction, rather than by a deny list.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from chalicelib.errors import InvalidRequest

MAX_NAME_LENGTH = 200  # leaves room for temp-file decoration within NAME_MAX (255)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")

MODELS, INPUTS, OUTPUTS = "models", "inputs", "outputs"
KINDS = (MODELS, INPUTS, OUTPUTS)
INGEST_KINDS = (MODELS, INPUTS)

NAME_RULE = (
    f"1-{MAX_NAME_LENGTH} characters of A-Z, a-z, 0-9, '.', '_', '-', '+', "
    "starting with a letter or digit"
)


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A validated (kind, name) pair: ``models/resnet.onnx``."""

    kind: str
    name: str

    @property
    def key(self) -> str:
        """The object's key, the same in S3 and under the store root."""
        return f"{self.kind}/{self.name}"


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a safe single path component."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and _NAME_RE.match(name) is not None
    )


def validate_name(name: object, field: str) -> str:
    """Return ``name`` or raise :class:`InvalidRequest` naming ``field``."""
    if not is_valid_name(name):
        raise InvalidRequest(f"Invalid '{field}': must be {NAME_RULE}")
    return name  # type: ignore[return-value]


def parse_key(key: object, field: str = "key", kinds: tuple[str, ...] = INGEST_KINDS) -> ObjectRef:
    """Parse ``<kind>/<name>`` (an S3 key) into an :class:`ObjectRef`."""
    if not isinstance(key, str) or key.count("/") != 1:
        raise InvalidRequest(
            f"Invalid '{field}': must be '<prefix>/<name>' with prefix one of "
            f"{', '.join(kinds)}"
        )
    kind, name = key.split("/")
    if kind not in kinds:
        raise InvalidRequest(
            f"Invalid '{field}': prefix must be one of {', '.join(kinds)}"
        )
    return ObjectRef(kind, validate_name(name, field))


def parse_filename(filename: object) -> ObjectRef:
    """Parse an inline ingest's ``filename``.

    A bare name goes under ``models/`` as in the seed; ``inputs/x.json`` or
    ``models/x`` choose the prefix explicitly.
    """
    if isinstance(filename, str) and "/" in filename:
        return parse_key(filename, field="filename")
    return ObjectRef(MODELS, validate_name(filename, "filename"))
