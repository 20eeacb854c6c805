"""Parsing of request bodies into typed requests, or InvalidRequest.

Malformed JSON, wrong types, missing and unknown fields are all rejected
here, before any I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Mapping

from chalicelib.config import human_size
from chalicelib.errors import FileTooLarge, InvalidRequest
from chalicelib.names import ObjectRef, parse_filename, parse_key, validate_name

JSON_TYPES = ("application/json",)


def parse_json_object(raw: bytes, content_type: str | None, max_bytes: int) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media not in JSON_TYPES and not media.endswith("+json"):
        raise InvalidRequest("Content-Type must be application/json")
    if len(raw) > max_bytes:
        raise FileTooLarge(
            max_bytes,
            f"Request body exceeds maximum allowed size ({human_size(max_bytes)}, within Lambda's 6 MB "
            "payload limit); upload larger files with POST /uploads",
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: absurdly deep nesting is malformed input, not a crash.
        raise InvalidRequest("Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return body


def _reject_unknown(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise InvalidRequest(f"Unknown field(s): {shown}")


@dataclass(frozen=True)
class InlineIngest:
    """``{"data", "filename", "encoding"?}``"""

    ref: ObjectRef
    data: bytes


@dataclass(frozen=True)
class S3Ingest:
    """``{"key"}``: ``ref`` names the store object (NFC), ``key`` the S3 object as given."""

    ref: ObjectRef
    key: str


def parse_ingest(body: Mapping[str, Any], max_bytes: int) -> InlineIngest | S3Ingest:
    """Validate an /ingest body."""
    _reject_unknown(body, {"data", "filename", "encoding", "key"})
    has_data, has_key = "data" in body, "key" in body
    if has_data == has_key:
        raise InvalidRequest(
            "Request body must contain 'key' or 'data' field"
            if not has_data
            else "Request body must contain either 'key' or 'data', not both"
        )
    if has_key:
        if "filename" in body or "encoding" in body:
            raise InvalidRequest("'filename' and 'encoding' go with 'data', not 'key'")
        return S3Ingest(parse_key(body["key"], "key"), body["key"])
    if "filename" not in body:
        raise InvalidRequest("Request body with 'data' must contain 'filename'")
    ref = parse_filename(body["filename"])
    data, encoding = body["data"], body.get("encoding", "text")
    if not isinstance(data, str):
        raise InvalidRequest("'data' must be a string")
    if encoding not in ("text", "base64"):
        raise InvalidRequest("'encoding' must be 'text' or 'base64'")
    if encoding == "base64":
        if len(data) // 4 * 3 > max_bytes + 3:
            raise FileTooLarge(max_bytes)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("'data' is not valid base64") from None
    else:
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest("'data' is not valid UTF-8 text") from None
    if not raw:
        # A 0-byte model or input is never what a client meant to store.
        raise InvalidRequest("'data' must not be empty")
    if len(raw) > max_bytes:
        raise FileTooLarge(max_bytes)
    return InlineIngest(ref, raw)


@dataclass(frozen=True)
class PredictRequest:
    """``{"fileId"?, "model", "inputs"? | "input"?}``

    ``file_id`` names the result (and, without ``inputs`` or ``input``, an
    ingested input by its fileId); ``None`` only with ``input``, whose own
    fileId then names the result. ``input`` is an ingested input by name.
    """

    file_id: str | None
    model: ObjectRef
    inputs: Any = None
    input: ObjectRef | None = None
    store: bool = True
    """``"store": false``: answer without storing or archiving the result."""


def _object_ref(value: Any, field: str, kind: str) -> ObjectRef:
    """``<name>`` or ``<kind>/<name>``, with the store's name rules."""
    if isinstance(value, str) and "/" in value:
        return parse_key(value, field, kinds=(kind,))
    return ObjectRef(kind, validate_name(value, field))


def parse_predict(body: Mapping[str, Any]) -> PredictRequest:
    """Validate a /predict body. ``inputs`` is checked by the model's runner."""
    _reject_unknown(body, {"fileId", "model", "inputs", "input", "store"})
    if "model" not in body or ("fileId" not in body and "input" not in body):
        raise InvalidRequest(
            "Request body must contain 'fileId' and 'model' fields (or 'model' and 'input', an ingested input by name)"
        )
    if "inputs" in body and "input" in body:
        raise InvalidRequest("Give either 'inputs' (inline) or 'input' (an ingested input's name), not both")
    file_id = validate_name(body["fileId"], "fileId") if "fileId" in body else None
    ref = _object_ref(body["model"], "model", "models")
    input_ref = _object_ref(body["input"], "input", "inputs") if "input" in body else None
    if "inputs" in body and not isinstance(body["inputs"], dict):
        raise InvalidRequest("'inputs' must be a JSON object mapping input names to arrays")
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise InvalidRequest("'store' must be true or false")
    return PredictRequest(file_id, ref, body.get("inputs"), input_ref, store)


def parse_upload(body: Mapping[str, Any], max_bytes: int) -> tuple[ObjectRef, int]:
    """Validate a /uploads body: ``{"key": "models/<name>"|"inputs/<name>", "sizeBytes": N}``."""
    _reject_unknown(body, {"key", "sizeBytes"})
    if "key" not in body or "sizeBytes" not in body:
        raise InvalidRequest("Request body must contain 'key' and 'sizeBytes' fields")
    ref = parse_key(body["key"], "key")
    size = body["sizeBytes"]
    # bool is an int subclass; true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRequest("'sizeBytes' must be a non-negative integer")
    if size > max_bytes:
        raise FileTooLarge(max_bytes)
    return ref, size
