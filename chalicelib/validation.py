"""Parsing of request bodies into typed requests, or InvalidRequest.

Malformed JSON, wrong types, missing and unknown fields are all rejected
here, before any I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from chalicelib.config import human_size
from chalicelib.errors import EmptyObject, FileTooLarge, InvalidRequest, UnsupportedMediaType
from chalicelib.names import ObjectRef, parse_filename, parse_key, validate_name

JSON_TYPES = ("application/json",)
# RFC 8259: JSON between systems is UTF-8; "utf8" is the common misspelling.
UTF8_CHARSETS = ("utf-8", "utf8")


def check_json_content_type(content_type: str | None) -> None:
    """:class:`UnsupportedMediaType` (415) unless ``content_type`` declares JSON
    (``application/json`` or ``application/*+json``) with charset UTF-8 or no
    charset. A missing header is refused too: the body's type is not guessed."""
    if content_type is None or not content_type.strip():
        raise UnsupportedMediaType("Content-Type is missing; send application/json")
    media, *params = (part.strip() for part in content_type.split(";"))
    media = media.lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType("Content-Type must be application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in UTF8_CHARSETS:
            raise UnsupportedMediaType("Content-Type charset must be utf-8 (or left out)")


def parse_json_object(raw: bytes, content_type: str | None, max_bytes: int) -> dict[str, Any]:
    """Decode a request body that must be one JSON object, in UTF-8."""
    check_json_content_type(content_type)
    if len(raw) > max_bytes:
        raise FileTooLarge(
            max_bytes,
            f"Request body exceeds maximum allowed size ({human_size(max_bytes)}, within Lambda's 6 MB "
            "payload limit); upload larger files with POST /uploads",
        )
    try:
        # Decoded here, not by json.loads: given bytes, it would also take UTF-16 and UTF-32.
        # A NUL is never in JSON text (nor escaped in a string): it is UTF-16/32 that decoded.
        text = raw.decode("utf-8")
        if "\x00" in text:
            raise UnicodeError
    except UnicodeError:
        raise InvalidRequest("Request body must be UTF-8 JSON (not UTF-16 or UTF-32)") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: absurdly deep nesting is malformed input, not a crash.
        raise InvalidRequest("Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object")
    return body


def reject_unknown(body: Mapping[str, Any], allowed: Iterable[str], what: str = "field", hint: str = "") -> None:
    """InvalidRequest naming (a few of) the keys of ``body`` not in ``allowed``."""
    allowed = set(allowed)
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise InvalidRequest(f"Unknown {what}(s): {shown}{hint}")


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
    reject_unknown(body, {"data", "filename", "encoding", "key"})
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
    check_object_size(len(raw), max_bytes)
    return InlineIngest(ref, raw)


def check_object_size(size: int, max_bytes: int) -> None:
    """The one size rule of every ingest path (inline, by key, S3 event,
    /uploads): at least one byte (:class:`EmptyObject`, a 400: a 0-byte model
    or input is never what a client meant to store) and at most ``max_bytes``
    (:class:`FileTooLarge`)."""
    if size <= 0:
        raise EmptyObject()
    if size > max_bytes:
        raise FileTooLarge(max_bytes)


@dataclass(frozen=True)
class PredictRequest:
    """``{"fileId"?, "model", "inputs"? | "input"?, "version"?}``

    ``file_id`` names the result (and, without ``inputs`` or ``input``, an
    ingested input by its fileId); ``None`` only with ``input``, whose own
    fileId then names the result. ``input`` is an ingested input by name.
    ``version`` pins a kept version of the model (``None``: the current one).
    """

    file_id: str | None
    model: ObjectRef
    inputs: Any = None
    input: ObjectRef | None = None
    version: int | None = None
    store: bool = True
    """``"store": false``: answer without storing or archiving the result."""


def _object_ref(value: Any, field: str, kind: str) -> ObjectRef:
    """``<name>`` or ``<kind>/<name>``, with the store's name rules."""
    if isinstance(value, str) and "/" in value:
        return parse_key(value, field, kinds=(kind,))
    return ObjectRef(kind, validate_name(value, field))


def parse_predict(body: Mapping[str, Any]) -> PredictRequest:
    """Validate a /predict body. ``inputs`` is checked by the model's runner."""
    reject_unknown(body, {"fileId", "model", "inputs", "input", "version", "store"})
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
    version = parse_version(body["version"], "version") if "version" in body else None
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise InvalidRequest("'store' must be true or false")
    return PredictRequest(file_id, ref, body.get("inputs"), input_ref, version, store)


def parse_version(value: Any, field: str = "version") -> int:
    """A model version number in a JSON body: a positive integer."""
    # bool is an int subclass; true is not a version.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'{field}' must be a positive integer (a model version number)")
    return value


def parse_version_param(query: Mapping[str, str] | None) -> int | None:
    """The ``?version=n`` query parameter, if given: a positive integer."""
    text = (query or {}).get("version")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise InvalidRequest("'version' must be a positive integer (a model version number)")
    return parse_version(int(text))


def parse_rollback(body: Mapping[str, Any]) -> int:
    """Validate a rollback body: ``{"version": n}``."""
    reject_unknown(body, {"version"})
    if "version" not in body:
        raise InvalidRequest("Request body must contain 'version' (the kept version to make current)")
    return parse_version(body["version"])


def parse_upload(body: Mapping[str, Any], max_bytes: int) -> tuple[ObjectRef, int]:
    """Validate a /uploads body: ``{"key": "models/<name>"|"inputs/<name>", "sizeBytes": N}``."""
    reject_unknown(body, {"key", "sizeBytes"})
    if "key" not in body or "sizeBytes" not in body:
        raise InvalidRequest("Request body must contain 'key' and 'sizeBytes' fields")
    ref = parse_key(body["key"], "key")
    size = body["sizeBytes"]
    # bool is an int subclass; true is not a size.
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidRequest("'sizeBytes' must be a non-negative integer")
    check_object_size(size, max_bytes)
    return ref, size
