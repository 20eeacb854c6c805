"""A duplicate copy of one S3 object takes no byte: ``Store.put`` with the
source, ETag and size of the current version answers ``exists`` under the
lock without asking for a chunk (issue 16, finding 5)."""

from __future__ import annotations

import os

import pytest

from chalicelib.names import ObjectRef
from chalicelib.store import Store

REF = ObjectRef("models", "m.bin")
SOURCE = "s3://bkt/models/m.bin"


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "efs"), lock_timeout=5)


def untouchable():
    raise AssertionError("a duplicate must not read the object")
    yield b""  # pragma: no cover - a generator that fails when started


def test_the_same_object_again_takes_no_chunk(store):
    first = store.put(REF, [b"weights"], source=SOURCE, etag='"e1"', expected_size=7)
    again = store.put(REF, untouchable(), source=SOURCE, etag='"e1"', expected_size=7)
    assert (first.status, again.status) == ("created", "exists") and again.manifest == first.manifest


@pytest.mark.parametrize(
    "change",
    [
        {"etag": '"e2"'},  # a new version of the key
        {"source": "s3://bkt/models/m\u0301.bin"},  # another key of the name
        {"source": "inline", "etag": None},  # not from S3: no ETag to trust
        {"expected_size": None},  # a copy that does not say its size
    ],
)
def test_anything_else_is_read(store, change):
    store.put(REF, [b"weights"], source=SOURCE, etag='"e1"', expected_size=7)
    args = {"source": SOURCE, "etag": '"e1"', "expected_size": 7, **change}
    chunks = iter([b"weights"])
    result = store.put(REF, chunks, **args)
    assert next(chunks, None) is None  # read
    assert result.status == "exists"  # same bytes: nothing rewritten


def test_a_tampered_object_is_rewritten_even_with_the_same_etag(store):
    store.put(REF, [b"weights"], source=SOURCE, etag='"e1"', expected_size=7)
    with open(store.path(REF), "r+b") as f:
        f.write(b"W")
        os.fsync(f.fileno())
    result = store.put(REF, [b"weights"], source=SOURCE, etag='"e1"', expected_size=7)
    assert result.status == "updated" and store.read_bytes(REF)[1] == b"weights"
