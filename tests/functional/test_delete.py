"""DELETE /models|inputs/{name}, S3 ObjectRemoved events, inputs by name, results by reference."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from tests.support.onnx_models import Mlp
from tests.support.routes import error, ok, post
from tests.support.s3_events import s3_event

MLP = Mlp.random(seed=3)
X = np.random.default_rng(7).standard_normal((2, 4)).astype(np.float32)


def ingest(client, filename: str, data: bytes) -> dict:
    return ok(
        post(client, "/ingest", {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": filename})
    )


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def removed_event(bucket: str, key: str) -> dict:
    return s3_event(bucket, key, "ObjectRemoved:Delete")


# -- DELETE ---------------------------------------------------------------------------


def test_delete_model_then_404_everywhere_warm_cache_included(client, efs_root):
    created = ingest(client, "mlp.onnx", MLP.onnx_bytes())
    ok(post(client, "/predict", {"fileId": "r1", "model": "mlp.onnx", "inputs": {"x": X.tolist()}}))
    warm = ok(post(client, "/predict", {"fileId": "r1", "model": "mlp.onnx", "inputs": {"x": X.tolist()}}))
    assert warm["cache"] == "hit"
    r = client.http.delete("/models/mlp.onnx")
    body = ok(r)
    assert body["status"] == "deleted" and body["key"] == "models/mlp.onnx" and body["name"] == "mlp.onnx"
    assert body["fileId"] == created["fileId"]
    error(client.http.get("/models/mlp.onnx"), 404, "NOT_FOUND")
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}
    # The warm runner is still in this process's cache: the manifest check stops it.
    error(
        post(client, "/predict", {"fileId": "r1", "model": "mlp.onnx", "inputs": {"x": X.tolist()}}), 404, "NOT_FOUND"
    )
    assert not (efs_root / "models" / "mlp.onnx").exists()
    error(client.http.delete("/models/mlp.onnx"), 404, "NOT_FOUND")


def test_delete_unknown_and_invalid_names(client):
    body = error(client.http.delete("/models/ghost.onnx"), 404, "NOT_FOUND")
    assert "ghost.onnx" in body["message"]
    error(client.http.delete("/inputs/ghost.npy"), 404, "NOT_FOUND")
    for name in ("..", ".hidden", "a%00b", "%c0%ae"):
        error(client.http.delete(f"/models/{name}"), 400, "INVALID_REQUEST")


def test_delete_decodes_the_path_parameter(client):
    ingest(client, "my model+1 (é).bin", b"abc")
    body = ok(client.http.delete("/models/my%20model%2B1%20%28%C3%A9%29.bin"))
    assert body["name"] == "my model+1 (é).bin"
    error(client.http.get("/models/my%20model%2B1%20%28%C3%A9%29.bin"), 404, "NOT_FOUND")


def test_delete_input_and_its_file_id_names_nothing(client):
    ingest(client, "mlp.onnx", MLP.onnx_bytes())
    x = ingest(client, "inputs/x.npy", npy(X))
    ok(post(client, "/predict", {"fileId": x["fileId"], "model": "mlp.onnx"}))
    body = ok(client.http.delete("/inputs/x.npy"))
    assert body == {**body, "status": "deleted", "key": "inputs/x.npy", "fileId": x["fileId"]}
    error(post(client, "/predict", {"model": "mlp.onnx", "input": "x.npy"}), 404, "NOT_FOUND")
    # The fileId is no input any more: the request has neither inputs nor a stored input.
    body = error(post(client, "/predict", {"fileId": x["fileId"], "model": "mlp.onnx"}), 400, "INVALID_REQUEST")
    assert "No inputs" in body["message"]
    assert ok(client.http.get("/models"))["count"] == 1  # the model is untouched


def test_delete_removes_the_s3_object_too(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/m.bin", Body=b"weights")
    ok(post(client, "/ingest", {"key": "models/m.bin"}))
    body = ok(client.http.delete("/models/m.bin"))
    assert body["s3Deleted"] is True
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="models/").get("KeyCount", 0) == 0
    # Nothing left to resurrect it: a re-ingest finds no object.
    error(post(client, "/ingest", {"key": "models/m.bin"}), 404, "S3_NOT_FOUND")


def test_failed_s3_delete_keeps_the_store_copy(client, bucket, s3_client, monkeypatch):
    from chalicelib import s3
    from chalicelib.errors import S3Unavailable

    s3_client.put_object(Bucket=bucket, Key="models/m.bin", Body=b"weights")
    ok(post(client, "/ingest", {"key": "models/m.bin"}))

    def failing(settings_, bucket_, key):
        raise S3Unavailable()

    monkeypatch.setattr(s3, "delete", failing)
    r = client.http.delete("/models/m.bin")
    assert r.status_code >= 500 and "Traceback" not in r.body.decode()
    assert ok(client.http.get("/models/m.bin"))["key"] == "models/m.bin"


# -- ObjectRemoved events -------------------------------------------------------------


def test_removed_event_deletes_the_copy(client, bucket, s3_client):
    for key in ("models/m.bin", "inputs/x.json"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"{}")
        ok(post(client, "/ingest", {"key": key}))
        s3_client.delete_object(Bucket=bucket, Key=key)
        r = client.lambda_.invoke("on_object_created", removed_event(bucket, key))
        assert [o["status"] for o in r.payload] == ["deleted"], r.payload
    error(client.http.get("/models/m.bin"), 404, "NOT_FOUND")
    assert ok(client.http.get("/models"))["count"] == 0
    # Redelivered: nothing left, nothing fails.
    r = client.lambda_.invoke("on_object_created", removed_event(bucket, "models/m.bin"))
    assert [o["status"] for o in r.payload] == ["absent"]


def test_late_removed_event_keeps_a_recreated_object(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/m.bin", Body=b"old")
    ok(post(client, "/ingest", {"key": "models/m.bin"}))
    s3_client.delete_object(Bucket=bucket, Key="models/m.bin")
    s3_client.put_object(Bucket=bucket, Key="models/m.bin", Body=b"new weights")
    ok(post(client, "/ingest", {"key": "models/m.bin"}))
    r = client.lambda_.invoke("on_object_created", removed_event(bucket, "models/m.bin"))
    assert [o["status"] for o in r.payload] == ["kept"], r.payload
    assert ok(client.http.get("/models/m.bin"))["sizeBytes"] == len(b"new weights")


def test_removed_event_with_a_bad_key_is_skipped(client, bucket):
    r = client.lambda_.invoke("on_object_created", removed_event(bucket, "models/../x"))
    assert [o["status"] for o in r.payload] == ["skipped"]


# -- inputs by name -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["x.npy", "inputs/x.npy"])
def test_predict_with_an_input_by_name(client, field):
    ingest(client, "mlp.onnx", MLP.onnx_bytes())
    x = ingest(client, "inputs/x.npy", npy(X))
    by_id = ok(post(client, "/predict", {"fileId": x["fileId"], "model": "mlp.onnx"}))
    by_name = ok(post(client, "/predict", {"model": "mlp.onnx", "input": field}))
    assert by_name["result"] == by_id["result"] and by_name["fileId"] == x["fileId"]
    named_result = ok(post(client, "/predict", {"fileId": "run-7", "model": "mlp.onnx", "input": field}))
    assert named_result["fileId"] == "run-7" and named_result["result"] == by_id["result"]
    assert named_result["efsPath"].endswith("/outputs/run-7.result")


def test_input_by_name_is_validated(client):
    ingest(client, "mlp.onnx", MLP.onnx_bytes())
    for bad in ("../x.npy", "models/x.npy", ".x", "", 7, "a/b/c"):
        error(post(client, "/predict", {"model": "mlp.onnx", "input": bad}), 400, "INVALID_REQUEST")
    error(
        post(client, "/predict", {"model": "mlp.onnx", "input": "x.npy", "inputs": {"x": [[1]]}}),
        400,
        "INVALID_REQUEST",
    )
    error(post(client, "/predict", {"model": "mlp.onnx"}), 400, "INVALID_REQUEST")
    body = error(post(client, "/predict", {"model": "mlp.onnx", "input": "nope.npy"}), 404, "NOT_FOUND")
    assert "nope.npy" in body["message"]


# -- result by reference --------------------------------------------------------------


def test_result_over_the_response_limit_is_returned_by_reference(client, bucket, s3_client, monkeypatch):
    ingest(client, "mlp.onnx", MLP.onnx_bytes())
    small = ok(post(client, "/predict", {"fileId": "r1", "model": "mlp.onnx", "inputs": {"x": X.tolist()}}))
    assert small["resultByReference"] is False and small["result"] is not None
    monkeypatch.setenv("MAX_RESPONSE_BYTES", "200")
    from chalicelib import edge

    edge.reset()
    body = ok(post(client, "/predict", {"fileId": "r2", "model": "mlp.onnx", "inputs": {"x": X.tolist()}}))
    assert body["resultByReference"] is True and body["result"] is None
    assert body["resultBytes"] > 200 and body["s3Key"] == "outputs/r2.result"
    stored = open(body["efsPath"], "rb").read()
    assert len(stored) == body["resultBytes"]
    archived = s3_client.get_object(Bucket=bucket, Key=body["s3Key"])["Body"].read()
    assert archived == stored and json.loads(stored)["result"] == small["result"]


def test_delete_removes_the_key_it_was_ingested_from_when_spelled_in_nfd(client, bucket, s3_client):
    from urllib.parse import quote

    nfd = "models/re\u0301sume\u0301.bin"  # as macOS spells "résumé"
    s3_client.put_object(Bucket=bucket, Key=nfd, Body=b"weights")
    landed = ok(post(client, "/ingest", {"key": nfd}))
    assert landed["efsPath"].endswith("/models/r\u00e9sum\u00e9.bin")
    body = ok(client.http.delete("/models/" + quote("r\u00e9sum\u00e9.bin")))
    assert body["key"] == "models/r\u00e9sum\u00e9.bin"
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="models/").get("KeyCount", 0) == 0


def test_delete_drops_the_names_old_failure_record(client, efs_root):
    """A name whose last attempt failed, then landed and was deleted, is gone
    from GET /models: no stale failed (or pending) record outlives the object."""
    from chalicelib.errors import S3Unavailable
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store, status

    store = Store(str(efs_root))
    ref = ObjectRef("models", "flaky.bin")
    ok(post(client, "/ingest", {"data": "v1", "filename": "flaky.bin"}))
    # A later attempt of the same name failed (e.g. a re-upload's event).
    store.status.failed(ref, ref.key, S3Unavailable(), status.stamp(), None)
    assert json.loads(client.http.get("/models/flaky.bin").body)["state"] == "failed"
    assert ok(client.http.delete("/models/flaky.bin"))["status"] == "deleted"
    error(client.http.get("/models/flaky.bin"), 404, "NOT_FOUND")
    assert all(m.get("name") != "flaky.bin" for m in ok(client.http.get("/models"))["models"])
