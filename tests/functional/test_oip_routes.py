"""The Open Inference Protocol (/v2) through the routes: JSON and binary tensors
for every datatype, metadata, readiness, output selection and errors in the
protocol's shape (issue 18, finding 1)."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from chalicelib.datatypes import DATATYPES
from chalicelib.errors import registry
from tests.support.onnx_models import identity_model, multi_io_model
from tests.support.routes import ok, post, proxy_event

HEADER = "Inference-Header-Content-Length"
BINARY = {"Accept": "application/octet-stream", "Content-Type": "application/octet-stream"}
MODEL = "my%20model.onnx"  # the store's name "my model.onnx", percent-encoded once


def ingest(client, filename: str, data: bytes) -> None:
    ok(post(client, "/ingest", {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": filename}))


def sample(datatype: str, shape=(2, 2)) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(["a", "bé", "", "モデル"], dtype=object).reshape(shape)
    if datatype == "BOOL":
        return np.array([True, False, False, True]).reshape(shape)
    numpy = {d.oip: d.numpy for d in DATATYPES}[datatype]
    info = np.iinfo(numpy) if np.dtype(numpy).kind in "iu" else None
    values = [info.min, 1, 2, info.max] if info else [-1.5, 0.0, 3.25, 65504.0]
    return np.array(values, dtype=numpy).reshape(shape)


def protocol_error(response, status: int, code: str) -> dict:
    """The protocol's error shape: the message in "error", our code and request id beside it."""
    assert response.status_code == status, response.body
    body = json.loads(response.body)
    assert isinstance(body["error"], str) and body["error"] and body["error"] not in registry(), body
    assert body["code"] == code and registry()[code].status == status, body
    assert body["requestId"], body
    assert "Traceback" not in body["error"]
    return body


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {**BINARY, HEADER: str(len(head))}


def split_binary(response) -> tuple[dict, bytes]:
    length = int(response.headers[HEADER])
    return json.loads(response.body[:length]), response.body[length:]


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(s.encode())) + s.encode() for s in array.flat)
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def test_health_and_server_metadata(client):
    assert ok(client.http.get("/v2/health/live")) == {"live": True}
    assert ok(client.http.get("/v2/health/ready")) == {"ready": True}
    meta = ok(client.http.get("/v2"))
    assert meta["name"] == "efs-ml" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_ready_and_versions(client):
    ingest(client, "my model.onnx", multi_io_model())
    meta = ok(client.http.get(f"/v2/models/{MODEL}"))
    assert meta["name"] == "my model.onnx" and meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("a", "FP32", [-1, 3]),
        ("ids", "INT64", [-1]),
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("sum", "FP32", [-1, 3]),
        ("doubled", "INT64", [-1]),
    ]
    assert ok(client.http.get(f"/v2/models/{MODEL}/versions/1")) == meta
    assert ok(client.http.get(f"/v2/models/{MODEL}/ready"))["ready"] is True
    assert ok(client.http.get(f"/v2/models/{MODEL}/versions/1/ready"))["ready"] is True
    # Only the current version is on the store today: any other is not found.
    body = protocol_error(client.http.get(f"/v2/models/{MODEL}/versions/2/ready"), 404, "NOT_FOUND")
    assert "Version 2" in body["error"] and "not kept" in body["error"]
    protocol_error(client.http.get(f"/v2/models/{MODEL}/versions/2"), 404, "NOT_FOUND")
    protocol_error(client.http.get(f"/v2/models/{MODEL}/versions/0"), 400, "INVALID_REQUEST")
    protocol_error(client.http.get("/v2/models/nope.onnx"), 404, "NOT_FOUND")
    protocol_error(client.http.get("/v2/models/nope.onnx/ready"), 404, "NOT_FOUND")
    protocol_error(client.http.get("/v2/models/..%2Fetc/ready"), 400, "INVALID_REQUEST")


@pytest.mark.parametrize("datatype", [d.oip for d in DATATYPES])
def test_identity_round_trips_every_datatype_as_json_and_binary(client, datatype):
    ingest(client, f"id-{datatype}.onnx", identity_model(datatype))
    x = sample(datatype)
    data = [str(v) for v in x.flat] if datatype == "BYTES" else x.reshape(-1).tolist()
    url = f"/v2/models/id-{datatype}.onnx/infer"
    answer = ok(
        post(
            client, url, {"id": "req-7", "inputs": [{"name": "x", "datatype": datatype, "shape": [2, 2], "data": data}]}
        )
    )
    assert answer["id"] == "req-7" and answer["model_name"] == f"id-{datatype}.onnx" and answer["model_version"] == "1"
    (out,) = answer["outputs"]
    assert (out["name"], out["datatype"], out["shape"]) == ("y", datatype, [2, 2])
    assert out["data"] == data

    raw, headers = binary_body(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": len(raw_bytes(x, datatype))},
                }
            ],
            "parameters": {"binary_data_output": True},
        },
        raw_bytes(x, datatype),
    )
    response = client.http.post(url, body=raw, headers=headers)
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == "application/octet-stream"
    header, rest = split_binary(response)
    (out,) = header["outputs"]
    assert (out["datatype"], out["shape"]) == (datatype, [2, 2]) and "data" not in out
    assert out["parameters"]["binary_data_size"] == len(rest) and rest == raw_bytes(x, datatype)


def test_output_selection_and_per_output_binary(client, efs_root):
    ingest(client, "my model.onnx", multi_io_model())
    inputs = [
        {"name": "a", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6]]},
        {"name": "ids", "datatype": "INT64", "shape": [2], "data": [5, 7]},
    ]
    url = f"/v2/models/{MODEL}/infer"
    only = ok(post(client, url, {"inputs": inputs, "outputs": [{"name": "doubled"}]}))
    assert only["outputs"] == [{"name": "doubled", "datatype": "INT64", "shape": [2], "data": [10, 14]}]
    assert "id" not in only
    # Order as asked; one binary, one JSON.
    body = {"inputs": inputs, "outputs": [{"name": "doubled", "parameters": {"binary_data": True}}, {"name": "sum"}]}
    response = client.http.post(url, body=json.dumps(body), headers={"Accept": "application/octet-stream"})
    header, rest = split_binary(response)
    doubled, total = header["outputs"]
    assert doubled["name"] == "doubled" and np.frombuffer(rest, "<i8").tolist() == [10, 14]
    assert total["name"] == "sum" and total["data"] == [2, 3, 4, 5, 6, 7]
    # A client whose Accept takes no binary answer (API Gateway would send it
    # base64 text) gets the same outputs as JSON.
    response = post(client, url, body)
    assert response.headers["Content-Type"] == "application/json"
    assert [o.get("data") for o in json.loads(response.body)["outputs"]] == [[10, 14], [2, 3, 4, 5, 6, 7]]
    # Stateless: nothing stored, nothing archived.
    assert not list(efs_root.rglob("*.result*"))
    body = protocol_error(post(client, url, {"inputs": inputs, "outputs": [{"name": "nope"}]}), 400, "INVALID_REQUEST")
    assert "'nope'" in body["error"] and "'sum'" in body["error"]


def test_binary_inputs_mixed_with_json_and_decoded_in_order(client):
    ingest(client, "my model.onnx", multi_io_model())
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw, headers = binary_body(
        {
            "inputs": [
                {"name": "ids", "datatype": "INT64", "shape": [2], "data": [1, 2]},
                {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": a.nbytes}},
            ]
        },
        a.tobytes(),
    )
    answer = ok(client.http.post(f"/v2/models/{MODEL}/infer", body=raw, headers=headers))
    assert answer["outputs"][0]["data"] == (a + 1).reshape(-1).tolist()


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", {}, 400, "valid JSON"),
        (b"[]", {}, 400, "JSON object"),
        (b'{"inputs": []}', {}, 400, "'inputs'"),
        (b'{"inputs": [{"name": "a", "datatype": "FP33", "shape": [1, 3], "data": [1, 2, 3]}]}', {}, 400, "FP33"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, 2]}]}', {}, 400, "2 values"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, -3], "data": [1]}]}', {}, 400, "shape"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": ["x", "y"]}]}', {}, 400, "numbers"),
        (b'{"inputs": [{"name": "a", "datatype": "INT64", "shape": [1], "data": [1.5]}]}', {}, 400, "fractional"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}', {}, 400, "'ids'"),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}]}',
            {HEADER: "999"},
            400,
            HEADER,
        ),
        (
            b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}]}',
            {},
            400,
            "binary_data_size",
        ),
    ],
)
def test_bad_requests_are_400_in_the_protocol_shape(client, body, headers, status, words):
    ingest(client, "my model.onnx", multi_io_model())
    response = client.http.post(
        f"/v2/models/{MODEL}/infer", body=body, headers={"Content-Type": "application/json", **headers}
    )
    assert words in protocol_error(response, status, "INVALID_REQUEST")["error"]


def test_binary_sizes_must_match_the_bytes(client):
    ingest(client, "my model.onnx", multi_io_model())
    a = np.zeros((1, 3), np.float32)
    tensor = {"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 8}}
    ids = {"name": "ids", "datatype": "INT64", "shape": [1], "data": [1]}
    raw, headers = binary_body({"inputs": [tensor, ids]}, a.tobytes()[:8])
    body = protocol_error(
        client.http.post(f"/v2/models/{MODEL}/infer", body=raw, headers=headers), 400, "INVALID_REQUEST"
    )
    assert "takes 12 bytes" in body["error"]
    raw, headers = binary_body(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": 12}}, ids]}, a.tobytes() + b"xx"
    )
    body = protocol_error(
        client.http.post(f"/v2/models/{MODEL}/infer", body=raw, headers=headers), 400, "INVALID_REQUEST"
    )
    assert "2 binary bytes" in body["error"]


def test_binary_body_limit_is_413(client, monkeypatch):
    from chalicelib import edge

    ingest(client, "my model.onnx", multi_io_model())
    monkeypatch.setenv("MAX_BINARY_BODY_BYTES", "1024")
    edge.reset()
    a = np.zeros((100, 3), np.float32)
    raw, headers = binary_body(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [100, 3], "parameters": {"binary_data_size": a.nbytes}}
            ]
        },
        a.tobytes(),
    )
    body = protocol_error(
        client.http.post(f"/v2/models/{MODEL}/infer", body=raw, headers=headers), 413, "FILE_TOO_LARGE"
    )
    assert "base64" in body["error"]


def test_unknown_model_and_opaque_model(client):
    inputs = [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]
    protocol_error(post(client, "/v2/models/nope.onnx/infer", {"inputs": inputs}), 404, "NOT_FOUND")
    ingest(client, "blob.bin", b"just bytes")
    meta = ok(client.http.get("/v2/models/blob.bin"))
    assert meta["platform"] == "opaque" and meta["inputs"] == []
    inputs = [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]
    body = protocol_error(post(client, "/v2/models/blob.bin/infer", {"inputs": inputs}), 400, "INVALID_REQUEST")
    assert "opaque" in body["error"]


def test_five_images_fit_one_binary_request(client, efs_root):
    """Issue 18, finding 6: one 1x3x224x224 float32 image is 3 MB as JSON (one
    per request); as binary it is 0.6 MB, so five fit in one request, answered
    as session.run answers them."""
    import onnxruntime as ort

    from tests.support.onnx_models import conv_model

    model = conv_model((8, 16))
    ingest(client, "conv.onnx", model)
    images = np.random.default_rng(1).standard_normal((5, 3, 224, 224)).astype(np.float32)
    raw, headers = binary_body(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [5, 3, 224, 224],
                    "parameters": {"binary_data_size": images.nbytes},
                }
            ],
            "outputs": [{"name": "features", "parameters": {"binary_data": True}}],
        },
        images.tobytes(),
    )
    assert len(raw) < 4 * 1024 * 1024  # MAX_BINARY_BODY_BYTES
    response = client.http.post("/v2/models/conv.onnx/infer", body=raw, headers=headers)
    assert response.status_code == 200, response.body
    header, rest = split_binary(response)
    (want,) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"image": images})
    np.testing.assert_allclose(np.frombuffer(rest, "<f4").reshape(header["outputs"][0]["shape"]), want, rtol=1e-5)


def test_lambda_gets_and_returns_binary_bodies_base64_encoded_as_api_gateway_carries_them(client):
    """API Gateway (binaryMediaTypes from app.api.binary_types) hands Lambda a
    binary body base64-encoded and decodes a base64 answer: the app's side of both."""
    import app

    ingest(client, "my model.onnx", multi_io_model())
    assert "application/octet-stream" in app.app.api.binary_types
    a = np.arange(3, dtype=np.float32).reshape(1, 3)
    raw, headers = binary_body(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}},
                {"name": "ids", "datatype": "INT64", "shape": [1], "data": [4]},
            ],
            "outputs": [{"name": "sum", "parameters": {"binary_data": True}}],
        },
        a.tobytes(),
    )
    event = proxy_event("POST", "/v2/models/{name}/infer", f"/v2/models/{MODEL}/infer", {"name": MODEL}, raw, headers)
    assert event["isBase64Encoded"]
    from chalice.local import LambdaContext

    answer = app.app(event, LambdaContext("api_handler", 1024, 30_000))
    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is True, answer
    body = base64.b64decode(answer["body"])
    length = int(answer["headers"][HEADER])
    assert np.frombuffer(body[length:], "<f4").tolist() == [1, 2, 3]


def test_a_body_that_is_not_base64_is_a_400_in_the_protocols_shape(client):
    """A base64 body that does not decode (only a caller that bypasses API
    Gateway can send one) is the client's error, not a 500."""
    from chalice.local import LambdaContext

    import app

    ingest(client, "my model.onnx", multi_io_model())
    raw, headers = binary_body(
        {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}}]},
        np.zeros(3, np.float32).tobytes(),
    )
    event = proxy_event("POST", "/v2/models/{name}/infer", f"/v2/models/{MODEL}/infer", {"name": MODEL}, raw, headers)
    event["body"] = event["body"][:-3] + "*=="
    answer = app.app(event, LambdaContext("api_handler", 1024, 30_000))
    assert answer["statusCode"] == 400, answer
    assert "could not be decoded" in json.loads(answer["body"])["error"]
