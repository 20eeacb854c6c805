"""The tensor codecs on their own (issue 18, finding 6: JSON was the slowest
part): binary tensors decode as views of the request body, encode as views of
the output, BYTES round-trips, and every malformed length is a 400."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from chalicelib.codecs import binary, json_tensors
from chalicelib.datatypes import BY_OIP, DATATYPES
from chalicelib.errors import InvalidRequest

LIMIT = 1_000_000


def test_fixed_size_tensors_are_views_of_the_body_not_copies():
    image = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    body = b'{"inputs": []}' + image.tobytes()
    header, rest = binary.split(body, "14")
    assert bytes(header) == b'{"inputs": []}'
    array = binary.decode("image", "FP32", [1, 3, 224, 224], rest, LIMIT, LIMIT)
    assert np.shares_memory(array, np.frombuffer(body, dtype=np.uint8))
    assert not array.flags.writeable and array.flags.c_contiguous
    np.testing.assert_array_equal(array, image)


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d.oip != "BYTES"], ids=lambda d: d.oip)
def test_every_fixed_size_datatype_round_trips_little_endian(datatype):
    values = np.arange(6).reshape(2, 3).astype(datatype.numpy)
    encoded = binary.encode(values, datatype)
    assert len(encoded) == 6 * datatype.itemsize
    assert bytes(encoded) == values.astype(np.dtype(datatype.numpy).newbyteorder("<")).tobytes()
    decoded = binary.decode("x", datatype.oip, [2, 3], memoryview(bytes(encoded)), LIMIT, LIMIT)
    np.testing.assert_array_equal(decoded, values)
    if datatype.itemsize > 1:  # a big-endian output is swapped, not sent as it is
        swapped = binary.encode(values.astype(values.dtype.newbyteorder(">")), datatype)
        assert bytes(swapped) == bytes(encoded)


def test_contiguous_outputs_encode_without_a_copy():
    out = np.ones((4, 256), dtype=np.float32)
    assert np.shares_memory(np.frombuffer(binary.encode(out, BY_OIP["FP32"]), dtype=np.uint8), out)


def test_bytes_are_length_prefixed_utf8():
    values = np.array(["a", "bé", "", "モデル"], dtype=object)
    encoded = binary.encode(values, BY_OIP["BYTES"])
    assert encoded[:5] == struct.pack("<I", 1) + b"a"
    decoded = binary.decode("s", "BYTES", [2, 2], memoryview(encoded), LIMIT, LIMIT)
    assert decoded.tolist() == [["a", "bé"], ["", "モデル"]]


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "words"),
    [
        ("FP32", [2], b"\0" * 7, "takes 8 bytes"),
        ("BOOL", [2], b"\x01\x02", "0 or 1"),
        ("BYTES", [1], b"\x05\0\0\0ab", "runs past"),
        ("BYTES", [2], struct.pack("<I", 1) + b"a", "ends before"),
        ("BYTES", [1], struct.pack("<I", 1) + b"ab", "past its 1 elements"),
        ("BYTES", [1], struct.pack("<I", 1) + b"\xff", "UTF-8"),
        ("FP99", [1], b"", "FP99"),
        ("FP32", [-1], b"", "shape"),
        ("FP32", [2000, 2000], b"", "MAX_TENSOR_ELEMENTS"),
    ],
)
def test_malformed_binary_tensors_are_refused(datatype, shape, raw, words):
    with pytest.raises(InvalidRequest, match=words):
        binary.decode("x", datatype, shape, memoryview(raw), LIMIT, LIMIT)


@pytest.mark.parametrize("length", ["0", "-3", "abc", "999"])
def test_header_length_must_fit_the_body(length):
    with pytest.raises(InvalidRequest, match="Inference-Header-Content-Length"):
        binary.split(b"{}" + b"\0" * 8, length)


def test_json_tensors_decode_flat_or_nested_and_cast_within_meaning():
    flat = json_tensors.oip_array("x", "FP32", [2, 2], [1, 2, 3.5, 4], LIMIT, LIMIT)
    assert flat.dtype == np.float32 and flat.tolist() == [[1, 2], [3.5, 4]]
    nested = json_tensors.oip_array("x", "INT64", [2, 2], [[1, 2], [3, 4]], LIMIT, LIMIT)
    assert nested.dtype == np.int64 and nested.tolist() == [[1, 2], [3, 4]]
    big = json_tensors.oip_array("x", "UINT64", [2], [0, 2**64 - 1], LIMIT, LIMIT)
    assert big.tolist() == [0, 2**64 - 1]  # exact, not through float64
    with pytest.raises(InvalidRequest, match="range"):
        json_tensors.oip_array("x", "UINT64", [1], [2**64], LIMIT, LIMIT)
    with pytest.raises(InvalidRequest, match="booleans"):
        json_tensors.oip_array("x", "BOOL", [1], [1], LIMIT, LIMIT)


def test_json_is_parsed_and_written_by_orjson_with_numpy_buffers():
    import orjson

    assert json_tensors.loads(b'{"a": [1.5]}') == orjson.loads(b'{"a": [1.5]}')
    with pytest.raises(ValueError):
        json_tensors.loads(b'{"a": NaN}')  # RFC 8259: no NaN literal
    data = np.array([1.5, np.nan], dtype=np.float32)
    assert json_tensors.dumps({"data": data}) == b'{"data":[1.5,null]}'
