"""Formats by content, validation at ingest and signatures, through the routes,
the S3 key and the S3 event (issue 18, findings 2-4).

* the runner is chosen by what the bytes are: an ONNX model named ``.bin``
  runs as ONNX, a ``.onnx`` that is not ONNX is refused at ingest;
* a model that cannot load here (external data, an opset or IR version the
  shipped onnxruntime lacks, a PyTorch checkpoint) is a 400 ``MODEL_INVALID``
  saying what to do, or for an S3 event the name's ``failed`` state; never
  ``ready``, and nothing already stored is replaced;
* an opaque model keeps the seed's checksum answer and refuses inputs;
* ``GET /models/{name}`` shows the signature recorded at ingest, and models
  stored before signatures were recorded keep working.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import zipfile
from urllib.parse import quote

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.support import hostile_models as hm
from tests.support.onnx_models import Mlp
from tests.support.routes import error, ok, post

MLP = Mlp.random(seed=5)
X = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
MLP_SIGNATURE = {
    "platform": "onnxruntime_onnx",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4], "onnxType": "tensor(float)"}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3], "onnxType": "tensor(float)"}],
}


def ingest(client, filename: str, data: bytes):
    body = {"data": base64.b64encode(data).decode(), "encoding": "base64", "filename": filename}
    return post(client, "/ingest", body)


def predict(client, model: str, inputs=None, file_id: str = "req-1", **extra):
    body = {"fileId": file_id, "model": model, **extra}
    if inputs is not None:
        body["inputs"] = inputs
    return post(client, "/predict", body)


def deliver(client, bucket, key):
    event = client.events.generate_s3_event(bucket=bucket, key=quote(key))
    return client.lambda_.invoke("on_object_created", event)


def _identity(opset: int = 13, ir_version: int = 8, domain: str = "") -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    imports = [helper.make_opsetid("", 13 if domain else opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, opset))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = ir_version
    return model.SerializeToString()


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in names:
            archive.writestr(name, b"\x80\x02}q\x00." if name.endswith(".pkl") else b"3")
    return buf.getvalue()


# -- format by content -----------------------------------------------------------------


def test_onnx_model_named_bin_runs_as_onnx(client):
    # On main the suffix chose the runner: a checksum, the inputs ignored (finding 4).
    created = ok(ingest(client, "mlp.bin", MLP.onnx_bytes()))
    assert created["status"] == "created"
    y = ok(predict(client, "mlp.bin", {"x": X.tolist()}))["result"]["y"]
    np.testing.assert_allclose(np.array(y["data"]), MLP.reference(X), rtol=1e-5, atol=1e-5)
    model = ok(client.http.get("/models/mlp.bin"))
    assert model["format"] == "onnx" and model["signature"]["platform"] == "onnxruntime_onnx"


def test_dot_onnx_that_is_not_onnx_is_refused_at_ingest(client, efs_root):
    # On main it was "ready", then a 500 at predict time (finding 3).
    body = error(ingest(client, "garbage.onnx", b"\x00\x01 definitely not onnx"), 400, "MODEL_INVALID")
    assert "'garbage.onnx' is not an ONNX model" in body["message"] and "/tmp" not in body["message"]
    state = ok(client.http.get("/models/garbage.onnx"))
    assert state["state"] == "failed" and state["readyVersion"] is None
    assert state["error"]["error"] == "MODEL_INVALID"
    assert not (efs_root / "models" / "garbage.onnx").exists()
    assert [p.name for p in (efs_root / "models").iterdir()] == []  # no temp left behind


def test_refused_upload_replaces_nothing(client, efs_root):
    good = ok(ingest(client, "mlp.onnx", MLP.onnx_bytes()))
    error(ingest(client, "mlp.onnx", b"not a model at all"), 400, "MODEL_INVALID")
    model = ok(client.http.get("/models/mlp.onnx"))
    assert model["version"] == 1 and model["sha256"] == good["sha256"] and model["readyVersion"] == 1
    assert (efs_root / "models" / "mlp.onnx").read_bytes() == MLP.onnx_bytes()
    ok(predict(client, "mlp.onnx", {"x": X.tolist()}))


@pytest.mark.parametrize("where", ["initializer", "constant_value", "sparse_initializer"])
def test_external_data_is_refused_at_ingest_naming_the_export_flags(client, where):
    data = hm.external_data_models("model.onnx.data")[where]
    message = error(ingest(client, "torch.onnx", data), 400, "MODEL_INVALID")["message"]
    assert "external data" in message and "model.onnx.data" in message
    assert "external_data=False" in message and "dynamo=False" in message


@pytest.mark.parametrize(
    "data,expected",
    [
        (_identity(opset=29), "opset 29 of domain 'ai.onnx' (onnxruntime 1.32.0 supports up to 28)"),
        (_identity(opset=6, domain="ai.onnx.ml"), "opset 6 of domain 'ai.onnx.ml'"),
        (_identity(ir_version=15), "IR version 15 (onnxruntime 1.32.0 reads up to 14)"),
    ],
    ids=["opset", "ml-opset", "ir"],
)
def test_opsets_and_ir_the_shipped_onnxruntime_lacks_are_refused(client, data, expected):
    assert expected in error(ingest(client, "new.onnx", data), 400, "MODEL_INVALID")["message"]


def test_opsets_it_has_are_accepted(client):
    ok(ingest(client, "old.onnx", _identity(opset=7)))
    ok(ingest(client, "newest.onnx", _identity(opset=28)))
    assert ok(predict(client, "newest.onnx", {"x": [1.5]}))["result"]["y"]["data"] == [1.5]


@pytest.mark.parametrize(
    "name,data,what",
    [
        ("model.pt", _zip(["archive/data.pkl", "archive/version", "archive/data/0"]), "PyTorch checkpoint"),
        ("model.bin", _zip(["m/data.pkl", "m/byteorder"]), "PyTorch checkpoint"),
        ("script.pt", _zip(["m/constants.pkl", "m/code/__torch__.py", "m/data.pkl"]), "PyTorch checkpoint"),
        ("old.pth", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.", "legacy format"),
    ],
    ids=["zip", "zip-named-bin", "torchscript", "legacy"],
)
def test_pytorch_checkpoints_are_refused_with_how_to_export(client, name, data, what):
    message = error(ingest(client, name, data), 400, "MODEL_INVALID")["message"]
    assert what in message and "torch.onnx.export(" in message
    assert "external_data=False" in message and "dynamo=False" in message


@pytest.mark.parametrize(
    "name,data,what",
    [
        ("model.keras", _zip(["metadata.json", "config.json", "model.weights.h5"]), "Keras"),
        ("model.h5", b"\x89HDF\r\n\x1a\n" + bytes(64), "HDF5"),
        ("model.tflite", b"\x1c\x00\x00\x00TFL3" + bytes(32), "TensorFlow Lite"),
        ("clf.joblib", pickle.dumps({"coef": [1.0, 2.0]}, protocol=4), "pickle"),
    ],
)
def test_other_model_formats_are_refused_with_what_to_do(client, name, data, what):
    message = error(ingest(client, name, data), 400, "MODEL_INVALID")["message"]
    assert what in message and ".onnx" in message


# -- opaque models ---------------------------------------------------------------------


def test_random_bin_stays_opaque_with_the_seeds_checksum(client):
    blob = np.random.default_rng(3).bytes(4096)
    ok(ingest(client, "random.bin", blob))
    result = ok(predict(client, "random.bin"))["result"]
    assert result == {"modelSize": 4096, "checksum": hashlib.sha256(blob).hexdigest(), "processed": True}
    model = ok(client.http.get("/models/random.bin"))
    assert model["format"] == "opaque"
    assert model["signature"] == {"platform": "opaque", "inputs": [], "outputs": [], "opsets": {}}


def test_inputs_sent_to_an_opaque_model_are_a_400(client):
    # On main: 200 {"checksum": ..., "processed": true}, the inputs ignored (finding 4).
    ok(post(client, "/ingest", {"data": "sample model data", "filename": "test-model.pt"}))
    message = error(predict(client, "test-model.pt", {"x": [1.0]}), 400, "INVALID_REQUEST")["message"]
    assert "'test-model.pt'" in message and "takes no inputs" in message
    ok(ingest(client, "inputs/x.json", b'{"x": [1.0]}'))
    error(predict(client, "test-model.pt", input="x.json"), 400, "INVALID_REQUEST")


def test_opaque_predict_with_an_inputs_file_id_keeps_the_seeds_answer(client):
    # The seed's fileId is an identifier: an ingested input's fileId with an
    # opaque model still answers the checksum (the input is not read).
    ok(post(client, "/ingest", {"data": "sample model data", "filename": "test-model.pt"}))
    stored = ok(ingest(client, "inputs/x.json", b'{"x": [1.0]}'))
    assert ok(predict(client, "test-model.pt", file_id=stored["fileId"]))["result"]["processed"] is True


# -- signatures ------------------------------------------------------------------------


def test_get_model_shows_the_signature_recorded_at_ingest(client, efs_root):
    # On main nothing said what a model takes or returns (finding 2).
    ok(ingest(client, "mlp.onnx", MLP.onnx_bytes()))
    model = ok(client.http.get("/models/mlp.onnx"))
    assert model["format"] == "onnx" and model["signature"] == {**MLP_SIGNATURE, "opsets": {"": 17}}
    manifest = json.loads((efs_root / ".meta" / "models" / "mlp.onnx.json").read_bytes())
    assert manifest["signature"] == model["signature"] and manifest["format"] == "onnx"
    listed = ok(client.http.get("/models"))["models"][0]
    assert listed["signature"] == model["signature"]


def test_zipmap_outputs_are_described_honestly(client):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    fitted = LogisticRegression().fit(x, (x[:, 1] > 0).astype(np.int64))
    data = to_onnx(fitted, x[:1], target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()
    ok(ingest(client, "clf.onnx", data))
    outputs = ok(client.http.get("/models/clf.onnx"))["signature"]["outputs"]
    assert outputs == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1], "onnxType": "tensor(int64)"},
        {"name": "output_probability", "datatype": None, "shape": None, "onnxType": "seq(map(int64,tensor(float)))"},
    ]


def test_models_stored_before_signatures_keep_working(client, efs_root):
    # A manifest without format or signature (an older store): served by its
    # suffix as before, its signature read from its bytes when asked for.
    from chalicelib.edge import get_store
    from chalicelib.names import ObjectRef

    get_store().put(ObjectRef("models", "old.onnx"), [MLP.onnx_bytes()], source="inline")
    get_store().put(ObjectRef("models", "old.bin"), [b"opaque bytes"], source="inline")
    manifest = json.loads((efs_root / ".meta" / "models" / "old.onnx.json").read_bytes())
    assert manifest["signature"] is None and manifest["format"] is None
    model = ok(client.http.get("/models/old.onnx"))
    assert model["format"] == "onnx" and model["signature"] == {**MLP_SIGNATURE, "opsets": {"": 17}}
    assert ok(client.http.get("/models/old.bin"))["format"] == "opaque"
    y = ok(predict(client, "old.onnx", {"x": X.tolist()}))["result"]["y"]
    np.testing.assert_allclose(np.array(y["data"]), MLP.reference(X), rtol=1e-5, atol=1e-5)
    assert ok(predict(client, "old.bin"))["result"]["processed"] is True
    # Re-ingesting new bytes records them.
    ok(ingest(client, "old.bin", MLP.onnx_bytes()))
    assert ok(client.http.get("/models/old.bin"))["format"] == "onnx"


# -- the S3 paths ----------------------------------------------------------------------


def test_invalid_model_by_s3_key_is_a_400_and_failed(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/broken.onnx", Body=b"PK not onnx")
    error(post(client, "/ingest", {"key": "models/broken.onnx"}), 400, "MODEL_INVALID")
    assert ok(client.http.get("/models/broken.onnx"))["state"] == "failed"


def test_invalid_model_from_the_s3_event_is_failed_never_ready(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/mlp.onnx", Body=MLP.onnx_bytes())
    deliver(client, bucket, "models/mlp.onnx")
    assert ok(client.http.get("/models/mlp.onnx"))["state"] == "ready"
    s3_client.put_object(
        Bucket=bucket, Key="models/mlp.onnx", Body=hm.external_data_models("model.onnx.data")["initializer"]
    )
    deliver(client, bucket, "models/mlp.onnx")
    state = ok(client.http.get("/models/mlp.onnx"))
    assert state["state"] == "failed" and state["error"]["error"] == "MODEL_INVALID"
    assert "external_data=False" in state["error"]["message"]
    assert state["readyVersion"] == 1 and state["format"] == "onnx"  # the ready version is kept
    ok(predict(client, "mlp.onnx", {"x": X.tolist()}))


def test_large_streamed_model_is_validated_before_commit(client, bucket, s3_client, monkeypatch):
    # Streamed in several parts: validated on a mapping of the written temp file.
    from chalicelib import edge
    from tests.support.onnx_models import big_mlp

    monkeypatch.setenv("S3_PART_BYTES", str(1024 * 1024))
    edge.reset()
    data, _ = big_mlp(6 * 1024 * 1024)
    s3_client.put_object(Bucket=bucket, Key="models/big.model", Body=data)
    deliver(client, bucket, "models/big.model")
    model = ok(client.http.get("/models/big.model"))
    assert model["state"] == "ready" and model["format"] == "onnx" and model["signature"]["inputs"]
    s3_client.put_object(Bucket=bucket, Key="models/big.model", Body=data[: len(data) // 2])
    deliver(client, bucket, "models/big.model")
    state = ok(client.http.get("/models/big.model"))
    # Cut short: not an ONNX model, so stored as opaque bytes (its name says nothing).
    assert state["state"] == "ready" and state["format"] == "opaque" and state["version"] == 2
    s3_client.put_object(Bucket=bucket, Key="models/big.onnx", Body=data[: len(data) // 2])
    deliver(client, bucket, "models/big.onnx")
    state = ok(client.http.get("/models/big.onnx"))
    assert state["state"] == "failed" and "truncated" in state["error"]["message"]
