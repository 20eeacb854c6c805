"""The client's tensors (efsml_client.tensors) against the service's own codecs, both ways, every datatype."""

import json

import numpy as np
import pytest

from chalicelib import oip
from chalicelib.codecs import binary
from chalicelib.datatypes import BY_OIP
from efsml_client import tensors

ARRAYS = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 255, 7]], np.uint8),
    "UINT16": np.array([[0, 65535, 7]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1, 7]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1, 7]], np.uint64),
    "INT8": np.array([[-128, 127, 0]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1, 0]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1, 0]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1, 0]], np.int64),
    "FP16": np.array([[0.5, -1.25, 65504]], np.float16),
    "FP32": np.array([[1.5, -2.0, 3.25e-7]], np.float32),
    "FP64": np.array([[1e300, -2.0, 1 / 3]], np.float64),
    "BYTES": np.array([["a", "héllo", ""]], dtype=object),
}


def test_every_datatype_reaches_the_service_decoder_unchanged():
    req = tensors.encode_request({name.lower(): array for name, array in ARRAYS.items()}, outputs=["y"])
    assert req.headers["Content-Type"] == "application/octet-stream"
    parsed = oip.parse_infer(req.body, req.headers[tensors.HEADER_LENGTH])
    assert parsed.outputs == [("y", True)] and parsed.binary_output
    # Numbers went as bytes, strings as JSON text.
    sent = {t["name"]: t for t in parsed.inputs}
    assert "data" in sent["bytes"] and all("data" not in sent[n.lower()] for n in ARRAYS if n != "BYTES")
    feeds = oip.decode_inputs(parsed, 10**6, 10**6)
    for name, array in ARRAYS.items():
        got = feeds[name.lower()]
        assert got.shape == array.shape and got.tolist() == array.tolist(), name
        assert got.dtype == array.dtype or name == "BYTES", name  # the service keeps strings as numpy str


def test_json_only_when_there_are_only_strings():
    req = tensors.encode_request({"s": np.array(["x"], dtype=object)})
    assert req.headers == {"Content-Type": "application/json"} and json.loads(req.body)["inputs"][0]["data"] == ["x"]


def test_the_service_binary_outputs_decode_to_the_same_arrays():
    header = {"model_name": "m", "outputs": []}
    chunks = []
    for name, array in ARRAYS.items():
        chunk = bytes(binary.encode(array, BY_OIP[name]))
        header["outputs"].append(
            {"name": name, "datatype": name, "shape": list(array.shape), "parameters": {"binary_data_size": len(chunk)}}
        )
        chunks.append(chunk)
    text = json.dumps(header).encode()
    doc = tensors.decode_response(text + b"".join(chunks), str(len(text)))
    for output, (name, array) in zip(doc["outputs"], ARRAYS.items()):
        assert output["data"].tolist() == array.tolist() and "parameters" not in output, name


def test_json_outputs_decode_and_print_with_null_for_non_finite():
    body = json.dumps(
        {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, None, 3.0, 4.0]}]}
    ).encode()
    doc = tensors.decode_response(body, None)
    assert doc["outputs"][0]["data"].dtype == np.float32 and np.isnan(doc["outputs"][0]["data"][0, 1])
    assert tensors.as_json(doc)["outputs"][0]["data"] == [[1.0, None], [3.0, 4.0]]
    inf = {"outputs": [{"name": "z", "data": np.array([np.inf, 1.0])}]}
    assert tensors.as_json(inf)["outputs"][0]["data"] == [None, 1.0]


def test_a_dtype_the_protocol_lacks_is_a_clear_error():
    with pytest.raises(ValueError, match="complex64"):
        tensors.encode_request({"c": np.zeros(2, np.complex64)})


def test_a_float64_npy_for_an_fp32_input_is_sent_as_fp32(tmp_path):
    from efsml_client.cli import read_inputs

    np.save(tmp_path / "x.npy", np.array([[1.5, 2.0]], np.float64))
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]}
    (x,) = read_inputs(str(tmp_path / "x.npy"), meta).values()
    assert x.dtype == np.float32 and x.tolist() == [[1.5, 2.0]]
    np.savez(tmp_path / "in.npz", ids=np.array([3], np.float64), x=np.array([[1, 2]], np.int64))
    meta["inputs"].append({"name": "ids", "datatype": "INT64", "shape": [-1]})
    got = read_inputs(str(tmp_path / "in.npz"), meta)
    assert got["x"].dtype == np.float32 and got["ids"].dtype == np.float64  # integer targets: the service casts


def test_a_zipmap_output_prints_as_its_maps():
    """ONNX-ML's sequence of maps comes as BYTES, one JSON text per element (docs/protocol.md)."""
    maps = [{"0": 0.25, "1": 0.75}, {"0": 1.0, "1": 0.0}]
    chunk = bytes(binary.encode(np.array([json.dumps(m) for m in maps], dtype=object), BY_OIP["BYTES"]))
    parameters = {"content_type": "application/json", "binary_data_size": len(chunk)}
    header = {"outputs": [{"name": "output_probability", "datatype": "BYTES", "shape": [2], "parameters": parameters}]}
    text = json.dumps(header).encode()
    printed = tensors.as_json(tensors.decode_response(text + chunk, str(len(text))))
    assert printed["outputs"][0]["data"] == maps
