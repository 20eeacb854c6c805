"""Oversized bodies, wrong content types, deep nesting, huge tensors: a clear
4xx every time, never a 5xx, and no memory blow-up (size caps hold)."""

from __future__ import annotations

import base64
import resource

import pytest

from tests.support import reliability as R
from tests.support.routes import ERROR_BODIES, check_error_body

KIB, MIB = 1024, 1 << 20


def _reset():
    from chalicelib import edge

    edge.reset()


@pytest.fixture
def caps(monkeypatch, efs_root):
    monkeypatch.setenv("MAX_REQUEST_BYTES", str(64 * KIB))
    monkeypatch.setenv("MAX_INGEST_BYTES", str(16 * KIB))
    monkeypatch.setenv("MAX_TENSOR_ELEMENTS", "1000")
    _reset()
    yield
    _reset()


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_oversized_bodies_are_413(caps, http, efs_root):
    cases = [
        {"data": "x" * (70 * KIB), "filename": "big.bin"},  # request > MAX_REQUEST_BYTES
        {"data": "x" * (17 * KIB), "filename": "big.bin"},  # object > MAX_INGEST_BYTES
        {"data": base64.b64encode(b"\0" * (20 * KIB)).decode(), "encoding": "base64", "filename": "big.bin"},
    ]
    for body in cases:
        status, resp = http.post("/ingest", body)
        check_error_body(status, resp, "oversized")
        assert resp["error"] == "FILE_TOO_LARGE" and resp["maxSize"] in ("64KB", "16KB"), resp
    status, resp = http.post("/ingest", b"{" + b" " * (10 * MIB) + b"}")
    assert (status, resp["error"]) == (413, "FILE_TOO_LARGE")
    status, resp = http.post("/predict", {"fileId": "f", "model": "m", "inputs": {"x": [0] * 40_000}})
    assert (status, resp["error"]) == (413, "FILE_TOO_LARGE")
    assert R.debris(str(efs_root)) == [] and not (efs_root / "models" / "big.bin").exists()
    # Exactly at the object cap is fine.
    status, resp = http.post("/ingest", {"data": "x" * (16 * KIB), "filename": "edge.bin"})
    assert status == 200 and resp["sizeBytes"] == 16 * KIB


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "image/png",
        "application/jsonp",
        "json",
    ],
)
def test_wrong_content_types_are_415(http, ctype):
    for path, body in (("/ingest", {"data": "x", "filename": "a.bin"}), ("/predict", {"fileId": "f", "model": "a"})):
        status, resp = http.post(path, body, content_type=ctype)
        check_error_body(status, resp, "content type")
        assert status == 415 and resp["error"] == "UNSUPPORTED_MEDIA_TYPE" and "Content-Type" in resp["message"]


@pytest.mark.parametrize("shape", ["array", "object", "in-field", "in-inputs"])
def test_deeply_nested_json_is_400(http, shape):
    depth = 100_000
    nested = {
        "array": "[" * depth + "]" * depth,
        "object": '{"a":' * depth + "1" + "}" * depth,
        "in-field": '{"data": ' + "[" * depth + "]" * depth + ', "filename": "a"}',
        "in-inputs": '{"fileId": "f", "model": "m", "inputs": {"x": ' + "[" * depth + "]" * depth + "}}",
    }[shape]
    before = _rss_mib()
    status, resp = http.post("/predict" if shape == "in-inputs" else "/ingest", nested)
    check_error_body(status, resp, "deep json")
    assert resp["error"] == "INVALID_REQUEST" and "JSON" in resp["message"]
    assert _rss_mib() - before < 100


def test_huge_inline_tensor_is_400(caps, http):
    from tests.support.onnx_models import Mlp

    mlp = Mlp.random(seed=1)
    status, _ = http.post(
        "/ingest", {"data": base64.b64encode(mlp.onnx_bytes()).decode(), "encoding": "base64", "filename": "mlp.onnx"}
    )
    assert status == 200
    before = _rss_mib()
    # 2,500 rows x 4 = 10,000 elements: under the 64 KiB body cap, over MAX_TENSOR_ELEMENTS.
    for inputs in ({"x": [[0.5] * 4] * 2500}, {"x": [[0] * 4] * 251}):
        status, resp = http.post("/predict", {"fileId": "t", "model": "mlp.onnx", "inputs": inputs})
        check_error_body(status, resp, "huge tensor")
        assert resp["error"] == "INVALID_REQUEST" and "too large" in resp["message"], resp
    # A small tensor on the same model works: the 400 is the cap, not the model.
    status, resp = http.post("/predict", {"fileId": "t", "model": "mlp.onnx", "inputs": {"x": [[0.5] * 4] * 2}})
    assert status == 200, resp
    assert _rss_mib() - before < 100


def test_error_bodies_are_documented_json_even_for_odd_requests(http):
    for method, path, body in [
        ("POST", "/ingest", b""),
        ("POST", "/ingest", b"\xff\xfe\x00"),
        ("POST", "/predict", b"null"),
        ("PUT", "/ingest", b"{}"),
        ("GET", "/predict", b""),
        ("DELETE", "/health", b""),
    ]:
        status, resp = http.request(method, path, body, {"Content-Type": "application/json"})
        assert 400 <= status < 500 and isinstance(resp, dict), (method, path, status, resp)
        assert resp["error"] == "INVALID_REQUEST" and isinstance(resp["requestId"], str)
        assert isinstance(resp["message"], str)
        ERROR_BODIES.append(("odd request", resp, ""))  # leak-scanned at session end
