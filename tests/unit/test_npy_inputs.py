"""Every .npy header an attacker can write is a 400 or a valid array, never a
500 (issue 9, finding 7); rank-0 inputs take a bare JSON number; a stored
input is read only as far as needed (finding 9)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from chalicelib.edge import get_settings
from chalicelib.errors import InvalidRequest
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits
from chalicelib.store import Store


def _model(shape: list, dtype: int = TensorProto.FLOAT) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "id",
        [helper.make_tensor_value_info("x", dtype, shape)],
        [helper.make_tensor_value_info("y", dtype, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


def _scale_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model.SerializeToString()


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    store = Store(str(tmp_path_factory.mktemp("npy")))
    ref = ObjectRef("models", "any.onnx")
    store.put(ref, [_model(["a", "b"])], source="test")  # any 2-D shape
    return ModelCache(1 << 30, Limits.from_settings(get_settings())).get(store, ref)[0].runner


def npy_with_header(header: str, body: bytes = b"", version: int = 1) -> bytes:
    raw = header.encode("utf-8")  # version 1 headers are latin1 in numpy; bytes beyond it are hostile too
    if version == 1:
        pad = (64 - (10 + len(raw) + 1) % 64) % 64
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw) + pad + 1) + raw + b" " * pad + b"\n" + body
    pad = (64 - (12 + len(raw) + 1) % 64) % 64
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", len(raw) + pad + 1) + raw + b" " * pad + b"\n" + body


def outcome(runner, data: bytes) -> str:
    try:
        runner.predict(data, "x.npy")
        return "ok"
    except InvalidRequest as exc:
        assert "Traceback" not in exc.message and 'File "' not in exc.message and len(exc.message) < 700
        return "400"


@pytest.mark.parametrize(
    "header, body",
    [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, -4), }", b""),
        ("{'descr': '|V0', 'fortran_order': False, 'shape': (3,), }", b""),
        ("{'descr': [('a', '<f4', (2,))], 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
        ("{'descr': ('<f4', (2, 2)), 'fortran_order': False, 'shape': (1,), }", b"\0" * 16),
        ("{'descr': '<f4', 'fortran_order': 'yes', 'shape': (1,), }", b"\0" * 4),
        ("{'descr': '<f4', 'fortran_order': 1, 'shape': (1,), }", b"\0" * 4),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2**62, 2**62), }", b""),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", b""),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", b"\0" * 8),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': 2, }", b"\0" * 8),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,), }", b"\0" * 8),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (True,), }", b"\0" * 4),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)*64, }", b"\0" * 4),
        ("{'descr': 'O', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
        ("{'descr': '<M8[s]', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8),
        ("{'descr': '<U0', 'fortran_order': False, 'shape': (5,), }", b""),
        ("{'descr': 'xyz', 'fortran_order': False, 'shape': (1,), }", b"\0"),
        ("{'descr': '<f4', 'fortran_order': False}", b""),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", b"\0" * 4),
        ("not a dict at all", b""),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (" + "(" * 200 + ")" * 200 + "), }", b""),
    ],
)
def test_malformed_npy_headers_are_400(runner, header, body):
    assert outcome(runner, npy_with_header(header, body)) == "400"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    descr=st.one_of(
        st.sampled_from(["<f4", "<i8", "|b1", "|V0", "|V4", "<U3", "|S2", "O", "<c8", ">f2", "<m8"]),
        st.text(max_size=12),
    ),
    fortran=st.one_of(st.booleans(), st.integers(-2, 2), st.text(max_size=3)),
    shape=st.one_of(
        st.lists(st.integers(-5, 2**40), max_size=6).map(tuple),
        st.lists(st.integers(0, 3), max_size=3),
        st.integers(),
        st.text(max_size=5),
    ),
    body=st.binary(max_size=64),
    version=st.sampled_from([1, 2]),
)
def test_fuzzed_npy_headers_never_fail_with_anything_but_400(runner, descr, fortran, shape, body, version):
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    assert outcome(runner, npy_with_header(header, body, version)) in ("ok", "400")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_fuzzed_npy_bytes_never_fail_with_anything_but_400(runner, data):
    assert outcome(runner, b"\x93NUMPY" + data) in ("ok", "400")


def test_valid_npy_still_round_trips(runner):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for array in (x, np.asfortranarray(x), np.zeros((0, 4), np.float32)):
        buf = io.BytesIO()
        np.save(buf, array)
        out = runner.predict(buf.getvalue(), "x.npy")["y"]
        assert out["shape"] == list(array.shape) and np.array_equal(np.array(out["data"]).reshape(array.shape), array)


def test_rank0_input_takes_a_json_number(tmp_path):
    store = Store(str(tmp_path))
    ref = ObjectRef("models", "scale.onnx")
    store.put(ref, [_scale_model()], source="test")
    runner = ModelCache(1 << 30, Limits.from_settings(get_settings())).get(store, ref)[0].runner
    assert runner.predict({"x": 3}, "inline")["y"] == {"data": 6.0, "shape": [], "dtype": "float32"}
    assert runner.predict(json.dumps({"x": 1.5}).encode(), "in.json")["y"]["data"] == 3.0
    buf = io.BytesIO()
    np.save(buf, np.array(4.0, np.float32))
    assert runner.predict(buf.getvalue(), "in.npy")["y"]["data"] == 8.0
    with pytest.raises(InvalidRequest, match="rank 1"):
        runner.predict({"x": [3]}, "inline")


class CountingInput:
    """An InputFile that records what was read."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data, self.size = name, data, len(data)
        self.head_bytes = self.read_calls = 0

    def head(self, n: int) -> bytes:
        self.head_bytes += min(n, self.size)
        return self.data[:n]

    def read(self) -> bytes:
        self.read_calls += 1
        return self.data


def test_npy_over_the_element_limit_is_refused_from_its_header_alone(runner):
    big = np.zeros((get_settings().max_tensor_elements + 1, 1), np.float32)
    buf = io.BytesIO()
    np.save(buf, big)
    source = CountingInput("big.npy", buf.getvalue())
    with pytest.raises(InvalidRequest, match="MAX_TENSOR_ELEMENTS"):
        runner.predict(source, source.name)
    assert source.read_calls == 0 and source.head_bytes < 20_000


def test_json_input_over_its_limit_is_refused_before_reading(runner):
    source = CountingInput("big.json", b" " * (get_settings().max_request_bytes + 1))
    with pytest.raises(InvalidRequest, match="larger than"):
        runner.predict(source, source.name)
    assert source.read_calls == 0 and source.head_bytes == 0


def test_opaque_runner_reads_no_input():
    from chalicelib.runners.opaque import OpaqueRunner

    # It takes no inputs: refused (400) before a byte of the input is read.
    source = CountingInput("huge.bin", b"x" * 1000)
    with pytest.raises(InvalidRequest, match="takes no inputs"):
        OpaqueRunner(3, "abc", "m.bin").predict(source, source.name)
    assert source.read_calls == 0 and source.head_bytes == 0
    assert OpaqueRunner(3, "abc", "m.bin").predict(None)["processed"] is True
