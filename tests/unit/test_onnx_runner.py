"""The ONNX runner on real onnxruntime sessions over models built with onnx.helper."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from chalicelib import edge
from chalicelib.edge import get_settings
from chalicelib.errors import InvalidRequest, ProcessingFailed, StoreCorrupt
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits, LoadedModel, onnx_runner
from chalicelib.store import Store
from chalicelib.store.streaming import HashingReader
from tests.support.onnx_models import Mlp, flag_model, log_model, multi_io_model

ROOT = Path(__file__).resolve().parents[2]
MLP = Mlp.random(seed=1)


@pytest.fixture
def store(efs_root):
    return Store(str(efs_root))


def put_model(store: Store, name: str, data: bytes) -> ObjectRef:
    ref = ObjectRef("models", name)
    store.put(ref, [data], source="test")
    return ref


def load(store: Store, name: str, data: bytes):
    ref = put_model(store, name, data)
    cached, hit = ModelCache(1 << 30, Limits.from_settings(get_settings())).get(store, ref)
    assert not hit
    return cached.runner


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# -- outputs ------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5])
def test_mlp_matches_numpy_reference_for_any_batch(store, batch):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    x = np.random.default_rng(batch).standard_normal((batch, 4)).astype(np.float32)
    out = runner.predict({"x": x.tolist()}, "inline")
    assert list(out) == ["y"]
    assert out["y"]["shape"] == [batch, 3] and out["y"]["dtype"] == "float32"
    np.testing.assert_allclose(np.array(out["y"]["data"]), MLP.reference(x), rtol=1e-5, atol=1e-5)
    json.dumps(out)  # plain JSON, no numpy scalars


def test_non_finite_outputs_are_null_in_strict_json(store):
    runner = load(store, "log.onnx", log_model())
    out = runner.predict({"x": [1.0, 0.0, -1.0]}, "inline")
    assert out["y"]["data"] == [0.0, None, None] and out["y"]["nonFinite"] is True
    json.dumps(out, allow_nan=False)  # what strict JSON parsers accept
    assert "nonFinite" not in runner.predict({"x": [1.0]}, "inline")["y"]


def test_multi_input_multi_output(store):
    runner = load(store, "multi.onnx", multi_io_model())
    a = [[1.5, 2.0, -1.0], [0.0, 0.25, 9.0]]
    out = runner.predict({"a": a, "ids": [3, -4]}, "inline")
    assert out["sum"] == {"data": (np.array(a, np.float32) + 1).tolist(), "shape": [2, 3], "dtype": "float32"}
    assert out["doubled"] == {"data": [6, -8], "shape": [2], "dtype": "int64"}


def test_ints_feed_float_inputs_and_integral_floats_feed_int_inputs(store):
    runner = load(store, "multi.onnx", multi_io_model())
    out = runner.predict({"a": [[1, 2, 3]], "ids": [2.0]}, "inline")
    assert out["sum"]["data"] == [[2.0, 3.0, 4.0]] and out["doubled"]["data"] == [4]


def test_bool_model(store):
    runner = load(store, "flag.onnx", flag_model())
    assert runner.predict({"flag": [True, False]}, "inline")["out"]["data"] == [False, True]


def test_json_and_npy_input_files(store):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    x = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    from_json = runner.predict(json.dumps({"x": x.tolist()}).encode(), "x.json")
    from_npy = runner.predict(npy(x), "x.npy")
    expected = MLP.reference(x)
    np.testing.assert_allclose(np.array(from_json["y"]["data"]), expected, rtol=1e-5, atol=1e-5)
    assert from_npy == from_json
    fortran = runner.predict(npy(np.asfortranarray(x)), "x.NPY")
    assert fortran == from_json


# -- invalid inputs: always InvalidRequest naming what the model expects -------

EXPECTS_MLP = "'x' float32 [batch, 4]"


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ({}, "missing 'x'"),
        ({"z": [[1, 2, 3, 4]]}, "unknown 'z'"),
        ({"x": [[1, 2, 3, 4]], "extra": [1]}, "unknown 'extra'"),
        ({"x": [[1, 2, 3]]}, "dimension 1 must be 4"),
        ({"x": [1, 2, 3, 4]}, "rank 1"),
        ({"x": [[[1, 2, 3, 4]]]}, "rank 3"),
        ({"x": 3.0}, "rank 0"),
        ({"x": [["a", "b", "c", "d"]]}, "non-numeric"),
        ({"x": [[1, None, 3, 4]]}, "non-numeric"),
        ({"x": [[True, False, True, False]]}, "must hold numbers"),
        ({"x": [[1, 2, 3, 4], [5, 6]]}, "not a rectangular array"),
        ({"x": [[1, 2, 3, 4], 5]}, "not a rectangular array"),
        ({"x": {"a": 1}}, "nested list"),
        ({"x": None}, "nested list"),
        ({"x": [[1e300, 0, 0, 0]]}, "outside the float32 range"),
        ({"x": [[10**30, 0, 0, 0]]}, "non-numeric or out-of-range"),
    ],
)
def test_invalid_inline_inputs(store, inputs, fragment):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    with pytest.raises(InvalidRequest) as info:
        runner.predict(inputs, "inline")
    assert fragment in info.value.message
    assert EXPECTS_MLP in info.value.message or "too large" in info.value.message


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ({"a": [[1, 2, 3]], "ids": [1.5]}, "fractional"),
        ({"a": [[1, 2, 3]], "ids": [2**63]}, "outside the int64 range"),
        ({"a": [[1, 2, 3]], "ids": [2**64]}, "non-numeric or out-of-range"),
        ({"a": [[1, 2, 3]], "ids": ["1"]}, "must hold integers"),
        ({"a": [[1, 2, 3], [4, 5, 6]], "ids": [1]}, "Dimension 'n' is 2 in input 'a' but 1 in input 'ids'"),
    ],
)
def test_invalid_multi_inputs(store, inputs, fragment):
    runner = load(store, "multi.onnx", multi_io_model())
    with pytest.raises(InvalidRequest) as info:
        runner.predict(inputs, "inline")
    assert fragment in info.value.message
    assert "'a' float32 [n, 3]; 'ids' int64 [n]" in info.value.message


def test_numbers_never_feed_bool_inputs(store):
    runner = load(store, "flag.onnx", flag_model())
    with pytest.raises(InvalidRequest, match="must hold booleans"):
        runner.predict({"flag": [1, 0]}, "inline")


def test_too_many_elements(store, monkeypatch):
    monkeypatch.setenv("MAX_TENSOR_ELEMENTS", "40")
    edge.reset()
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    assert runner.predict({"x": [[0] * 4] * 10}, "inline")["y"]["shape"] == [10, 3]
    with pytest.raises(InvalidRequest, match="at most 40 elements per request"):
        runner.predict({"x": [[0] * 4] * 11}, "inline")
    with pytest.raises(InvalidRequest, match="at most 40 elements"):
        runner.predict(npy(np.zeros((11, 4), np.float32)), "x.npy")


def test_too_many_elements_across_inputs(store, monkeypatch):
    monkeypatch.setenv("MAX_TENSOR_ELEMENTS", "10")
    edge.reset()
    runner = load(store, "multi.onnx", multi_io_model())
    runner.predict({"a": [[0, 0, 0]] * 2, "ids": [0, 0]}, "inline")  # 8 elements
    with pytest.raises(InvalidRequest, match="input 'ids' exceeds the 1 left"):
        runner.predict({"a": [[0, 0, 0]] * 3, "ids": [0, 0, 0]}, "inline")  # 9 + 3


@pytest.mark.parametrize(
    "payload, source, fragment",
    [
        (b"{not json", "x.json", "not valid JSON"),
        (b"[1, 2]", "x.json", "must hold a JSON object"),
        (b"x,y\n1,2", "x.csv", "must be .json or .npy"),
        (b"\x93NUMPY garbage", "x.npy", "not a valid NumPy array file"),
        (b"plain bytes", "x.npy", "not a valid NumPy array file"),
        (npy(np.zeros((2, 4), np.float32))[:-4], "x.npy", "truncated"),
        (npy(np.array([["a", "b", "c", "d"]])), "x.npy", "non-numeric"),
        (npy(np.zeros((2, 5), np.float32)), "x.npy", "dimension 1 must be 4"),
    ],
)
def test_invalid_input_files(store, payload, source, fragment):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    with pytest.raises(InvalidRequest, match=fragment):
        runner.predict(payload, source)


def test_npy_refuses_object_arrays_without_unpickling(store):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidRequest, match="Python objects"):
        runner.predict(buf.getvalue(), "x.npy")


def test_npy_needs_a_single_input_model(store):
    runner = load(store, "multi.onnx", multi_io_model())
    with pytest.raises(InvalidRequest, match="one unnamed array.*'a' float32 \\[n, 3\\]"):
        runner.predict(npy(np.zeros((1, 3), np.float32)), "a.npy")


def test_missing_inputs(store):
    runner = load(store, "mlp.onnx", MLP.onnx_bytes())
    with pytest.raises(InvalidRequest, match="No inputs.*'x' float32"):
        runner.predict(None, None)


def test_runtime_errors_from_the_session_are_invalid_requests(store):
    # Shapes that pass the declared signature but not the graph: a model
    # whose two inputs have independent symbolic dims that Add must broadcast.
    from onnx import TensorProto, helper

    from tests.support.onnx_models import _model

    graph = helper.make_graph(
        [helper.make_node("Add", ["p", "q"], ["r"])],
        "add",
        [
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["a"]),
            helper.make_tensor_value_info("q", TensorProto.FLOAT, ["b"]),
        ],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["c"])],
    )
    runner = load(store, "add.onnx", _model(graph))
    assert runner.predict({"p": [1, 2], "q": [3, 4]}, "inline")["r"]["data"] == [4.0, 6.0]
    with pytest.raises(InvalidRequest, match="The model rejected the inputs.*'p' float32 \\[a\\]"):
        runner.predict({"p": [1, 2, 3], "q": [1, 2]}, "inline")


# -- loading ------------------------------------------------------------------


def test_corrupt_model_is_processing_failed_naming_it(store):
    with pytest.raises(ProcessingFailed) as info:
        load(store, "broken.onnx", b"\x08\x07this is not a protobuf")
    assert type(info.value) is ProcessingFailed
    assert "'broken.onnx'" in info.value.message and "/" not in info.value.message.split("(")[0]
    assert "/tmp" not in info.value.message


def test_truncated_model_behind_the_manifest_is_store_corrupt(store, efs_root):
    data = MLP.onnx_bytes()
    put_model(store, "mlp.onnx", data)
    path = efs_root / "models" / "mlp.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreCorrupt, match="'mlp.onnx' does not match its manifest"):
        ModelCache(1 << 30).get(store, ObjectRef("models", "mlp.onnx"))


def test_same_size_tamper_is_caught_by_the_hash(store, efs_root):
    data = MLP.onnx_bytes()
    put_model(store, "mlp.onnx", data)
    # A still-loadable model with different weights and the same size.
    tampered = Mlp.random(seed=2).onnx_bytes()
    assert len(tampered) == len(data) and tampered != data
    (efs_root / "models" / "mlp.onnx").write_bytes(tampered)
    with pytest.raises(StoreCorrupt):
        ModelCache(1 << 30).get(store, ObjectRef("models", "mlp.onnx"))


def test_bytes_fallback_without_native_path(store):
    """Platforms without /proc: the runner reads the bytes through the reader."""
    data = MLP.onnx_bytes()
    ref = put_model(store, "mlp.onnx", data)

    class NoNative(HashingReader):
        def native_path(self):
            return None

    with store.open(ref) as (manifest, f):
        reader = NoNative(f)
        runner = onnx_runner.load(LoadedModel(manifest, reader))
        assert reader.finish() == manifest.sha256 and reader.bytes_read == len(data)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(runner.predict({"x": x.tolist()})["y"]["data"], MLP.reference(x), rtol=1e-5)


def test_native_path_hashes_the_whole_file(store):
    data = MLP.onnx_bytes()
    ref = put_model(store, "mlp.onnx", data)
    with store.open(ref) as (manifest, f):
        reader = HashingReader(f)
        path = reader.native_path()
        assert path is not None and open(path, "rb").read() == data
        with pytest.raises(RuntimeError):
            reader.read(1)
        assert reader.finish() == manifest.sha256 and reader.bytes_read == len(data)


def test_session_options_use_every_available_cpu():
    import os

    options = onnx_runner.session_options()
    assert options.intra_op_num_threads == len(os.sched_getaffinity(0))
    assert options.inter_op_num_threads == 1 and options.enable_mem_pattern


def test_nbytes_counts_at_least_the_model_size(store):
    # The cache counts the memory measured at load (issue 9), never less than
    # the weights the file holds; the first session of a process also pays
    # onnxruntime's own start-up, so the measure is a lower bound here.
    data = MLP.onnx_bytes()
    assert load(store, "mlp.onnx", data).nbytes >= len(data)


def test_concurrent_first_requests_load_once(store, monkeypatch):
    ref = put_model(store, "mlp.onnx", MLP.onnx_bytes())
    cache = ModelCache(1 << 30)
    loads = []
    real_load = onnx_runner.load

    def counting_load(model):
        loads.append(model.manifest.key)
        return real_load(model)

    monkeypatch.setattr(onnx_runner, "load", counting_load)
    barrier = threading.Barrier(8)
    results = []

    def first_request():
        barrier.wait()
        results.append(cache.get(store, ref))

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["models/mlp.onnx"]
    assert len({id(cached.runner) for cached, _ in results}) == 1
    assert sorted(hit for _, hit in results) == [False] + [True] * 7


def test_import_app_does_not_import_numpy_or_onnxruntime():
    code = (
        "import sys, app\n"
        "heavy = sorted(m for m in ('numpy', 'onnxruntime', 'onnx') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


# -- bounded loading (issue 9) --------------------------------------------------


def test_scan_finds_external_data_in_every_place_a_tensor_can_hide():
    from chalicelib.runners import onnx_scan
    from tests.support.hostile_models import external_data_models

    for where, model in external_data_models("weights.bin").items():
        with pytest.raises(onnx_scan.ExternalData):
            onnx_scan.scan(model)
        assert where
    report = onnx_scan.scan(MLP.onnx_bytes())
    assert report.tensors == 4 and report.nodes == 5


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x0a\xff\xff\xff\xff\x0f", "truncated"),  # length beyond the buffer
        (b"\x3a\x05\x0a\x03\x0a", "truncated"),  # graph > node cut short
        (b"\x0f", "wire type"),  # group/invalid wire type
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80", "truncated"),  # endless varint
    ],
)
def test_scan_refuses_malformed_files_without_crashing(data, fragment):
    from chalicelib.runners import onnx_scan

    with pytest.raises(onnx_scan.ScanError, match=fragment):
        onnx_scan.scan(data)


def test_runtime_itself_resolves_no_external_path(tmp_path, monkeypatch):
    """Defence in depth: even a model the scan let through finds no file."""
    import onnxruntime as ort

    from tests.support.hostile_models import external_data_models

    (tmp_path / "weights.bin").write_bytes(b"SECRET!!")
    monkeypatch.chdir(tmp_path)  # a relative location would resolve here
    for location in ("weights.bin", "../" + tmp_path.name + "/weights.bin"):
        model = external_data_models(location)["initializer"]
        with pytest.raises(Exception, match="does not exist|escapes"):
            ort.InferenceSession(model, onnx_runner.session_options(), providers=["CPUExecutionProvider"])


def test_runtime_messages_are_scrubbed():
    from chalicelib.scrub import scrub

    raw = (
        "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Mul node. "
        "Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:360 void* "
        "onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*) Available memory "
        "of 1 is smaller than requested bytes of 2 at /tmp/onnx-abc/model.onnx"
    )
    clean = scrub(raw)
    assert "Available memory of 1 is smaller than requested bytes of 2" in clean
    for leak in ("onnxruntime_src", ".cc", "/tmp", "BFCArena::", "[ONNXRuntimeError]"):
        assert leak not in clean
