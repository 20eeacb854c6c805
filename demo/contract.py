"""The API contract, as checks a client can run on any answer.

Each ``check_*`` returns the list of problems it found (empty = conforms),
so one step can report everything wrong with an answer at once. The shapes
are the seed's "API Usage" section plus this service's documented
additions (``GET /models``, ``POST /uploads``).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from chalicelib.errors import registry

_ERRORS = registry()
#: Each documented error code's HTTP status (from chalicelib.errors).
ERROR_STATUS = {code: spec.status for code, spec in _ERRORS.items()}
#: The one documented extra field each error carries.
ERROR_FIELD = {code: spec.field for code, spec in _ERRORS.items() if spec.field}
INGEST_STATUSES = ("created", "updated", "exists")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

Problems = list[str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fields(body: Any, spec: dict[str, Callable[[Any], bool]], what: str) -> Problems:
    """Check that ``body`` is an object with each field of ``spec`` passing its test."""
    if not isinstance(body, dict):
        return [f"{what}: body is {type(body).__name__}, not a JSON object"]
    problems = []
    for name, test in spec.items():
        if name not in body:
            problems.append(f"{what}: missing field '{name}'")
        elif not test(body[name]):
            problems.append(f"{what}: field '{name}' has unexpected value {body[name]!r:.80}")
    return problems


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def check_status(status: int, expected: int, body: Any) -> Problems:
    """The HTTP status, with the error body in the message when it differs."""
    if status == expected:
        return []
    hint = f" ({body.get('error')}: {body.get('message')})" if isinstance(body, dict) and "error" in body else ""
    return [f"HTTP {status}, expected {expected}{hint}"]


def check_error(status: int, body: Any, code: str) -> Problems:
    """A documented error: its status, and ``{error, message, requestId}`` plus its extra field."""
    problems = check_status(status, ERROR_STATUS[code], body)
    problems += _fields(
        body, {"error": lambda v: v == code, "message": _nonempty_str, "requestId": _nonempty_str}, code
    )
    extra = ERROR_FIELD.get(code)
    if isinstance(body, dict) and extra and extra not in body:
        problems.append(f"{code}: missing documented field '{extra}'")
    return problems


def check_ingest(
    status: int,
    body: Any,
    *,
    size: int | None = None,
    s3_key: str | None = None,
    statuses: tuple[str, ...] = INGEST_STATUSES,
) -> Problems:
    """A POST /ingest success: ``{fileId, efsPath, s3Key, sizeBytes, status}``."""
    problems = check_status(status, 200, body)
    problems += _fields(
        body,
        {
            "fileId": _nonempty_str,
            "efsPath": _nonempty_str,
            "s3Key": _opt_str,
            "sizeBytes": lambda v: _is_int(v) and v >= 0,
            "status": lambda v: v in INGEST_STATUSES,
        },
        "ingest",
    )
    if problems:
        return problems
    if size is not None and body["sizeBytes"] != size:
        problems.append(f"ingest: sizeBytes {body['sizeBytes']} != {size} sent")
    if s3_key is not None and body["s3Key"] != s3_key:
        problems.append(f"ingest: s3Key {body['s3Key']!r} != {s3_key!r}")
    if body["status"] not in statuses:
        problems.append(f"ingest: status {body['status']!r}, expected one of {', '.join(statuses)}")
    return problems


def check_predict(status: int, body: Any, file_id: str) -> Problems:
    """A POST /predict success: ``{fileId, efsPath, s3Key, durationMs, result}``."""
    problems = check_status(status, 200, body)
    problems += _fields(
        body,
        {
            "fileId": lambda v: v == file_id,
            "efsPath": _nonempty_str,
            "s3Key": _opt_str,
            "durationMs": lambda v: _is_number(v) and v >= 0,
            "result": lambda v: isinstance(v, dict),
        },
        "predict",
    )
    return problems


def check_opaque_result(result: Any, size: int, sha256: str) -> Problems:
    """The seed's result for an opaque model: ``{modelSize, checksum, processed}``."""
    problems = _fields(
        result,
        {"modelSize": lambda v: v == size, "checksum": lambda v: v == sha256, "processed": lambda v: v is True},
        "result",
    )
    return problems


def check_tensor(result: Any, output: str, expected: list, shape: list[int], tolerance: float = 1e-4) -> Problems:
    """One named ONNX output ``{data, shape, dtype}`` against expected values."""
    if not isinstance(result, dict) or not isinstance(result.get(output), dict):
        return [f"result: no output '{output}'"]
    tensor = result[output]
    problems = []
    if tensor.get("shape") != shape:
        problems.append(f"result: '{output}' shape {tensor.get('shape')} != {shape}")
    flat_got, flat_want = _flatten(tensor.get("data")), _flatten(expected)
    if len(flat_got) != len(flat_want) or any(
        not _is_number(g) or abs(g - w) > tolerance for g, w in zip(flat_got, flat_want)
    ):
        problems.append(f"result: '{output}' data {tensor.get('data')!r:.80} != {expected!r}")
    return problems


def _flatten(v: Any) -> list:
    if isinstance(v, list):
        return [x for item in v for x in _flatten(item)]
    return [v]


STATES = ("ready", "pending", "failed")


def check_model(
    status: int,
    body: Any,
    name: str | None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    kind: str = "models",
    states: tuple[str, ...] = STATES,
) -> Problems:
    """A GET /models/{name} success (also each entry of GET /models): its
    ``state``, the error of a failed one, and the ready version's manifest
    fields whenever one exists (``readyVersion`` not null)."""
    problems = check_status(status, 200, body)
    problems += _fields(body, {"state": lambda v: v in states}, "model")
    if problems:
        return problems
    if body["state"] != "ready":
        problems += _fields(body, {"stateTime": _nonempty_str, "key": _nonempty_str}, "model")
        if name is not None and body.get("name") != name:
            problems.append(f"model: field 'name' is {body.get('name')!r:.80}, expected {name!r:.80}")
    if body["state"] == "failed":
        problems += _fields(
            body.get("error"),
            {"error": lambda v: v in ERROR_STATUS, "message": _nonempty_str, "time": _nonempty_str},
            "model error",
        )
    if body["state"] != "ready" and body.get("readyVersion") is None:
        return problems  # nothing ready yet: no manifest fields
    problems += _fields(
        body,
        {
            "name": lambda v: v == name,
            "fileId": _nonempty_str,
            "sizeBytes": lambda v: _is_int(v) and v >= 0,
            "sha256": lambda v: isinstance(v, str) and bool(_SHA256.match(v)),
            "version": lambda v: _is_int(v) and v >= 1,
            "created": _nonempty_str,
            "updated": _nonempty_str,
        },
        "model",
    )
    if body["state"] == "ready":
        problems += _fields(body, {"key": lambda v: v == f"{kind}/{name}"}, "model")
    if problems:
        return problems
    if sha256 is not None and body["sha256"] != sha256:
        problems.append("model: sha256 differs from the bytes sent")
    if size is not None and body["sizeBytes"] != size:
        problems.append(f"model: sizeBytes {body['sizeBytes']} != {size}")
    return problems


def check_model_list(status: int, body: Any) -> Problems:
    """A GET /models success: ``{models: [...], count}``; a key whose name
    could not be stored is a failed entry with ``name`` null and an ``id``."""
    problems = check_status(status, 200, body)
    problems += _fields(body, {"models": lambda v: isinstance(v, list), "count": _is_int}, "models")
    if problems:
        return problems
    if body["count"] != len(body["models"]):
        problems.append(f"models: count {body['count']} != {len(body['models'])} entries")
    for entry in body["models"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(entry, dict) and name is None:
            problems += check_model(200, entry, None, states=("failed",))
            problems += _fields(entry, {"id": _nonempty_str}, "model")
        else:
            problems += check_model(200, entry, str(name))
    return problems


def check_accepted(status: int, body: Any, key: str) -> Problems:
    """A POST /ingest handed off: ``202 {status: accepted, statusUrl, key, name}``."""
    kind, _, name = key.partition("/")
    problems = check_status(status, 202, body)
    problems += _fields(
        body,
        {
            "status": lambda v: v == "accepted",
            "statusUrl": lambda v: isinstance(v, str) and v.startswith(f"/{kind}/"),
            "key": lambda v: v == key,
            "name": lambda v: v == name,
        },
        "accepted",
    )
    return problems


def check_upload(status: int, body: Any, key: str, size: int) -> Problems:
    """A POST /uploads success: a presigned PUT for ``key`` of ``size`` bytes."""
    problems = check_status(status, 200, body)
    problems += _fields(
        body,
        {
            "url": lambda v: isinstance(v, str) and v.startswith(("https://", "http://")),
            "method": lambda v: v == "PUT",
            "key": lambda v: v == key,
            "headers": lambda v: isinstance(v, dict),
            "sizeBytes": lambda v: v == size,
            "expiresIn": lambda v: _is_int(v) and v > 0,
        },
        "upload",
    )
    return problems


def check_health(status: int, body: Any) -> Problems:
    """GET /health on a healthy stack: the store is mounted and writable."""
    problems = check_status(status, 200, body)
    problems += _fields(body, {"status": lambda v: v == "ok", "store": lambda v: isinstance(v, dict)}, "health")
    return problems
