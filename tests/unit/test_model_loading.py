"""Loading a model by path (no copy in Python), its scan over a mapping, the
runtime's own refusal of external data, and what the footprint counts."""

from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np
import pytest

from chalicelib.errors import ModelRefused, ProcessingFailed
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import LoadedModel, onnx_runner, onnx_scan, ort_env
from chalicelib.store import Store
from chalicelib.store.streaming import HashingReader
from tests.support.hostile_models import external_data_models
from tests.support.onnx_models import Mlp

MLP = Mlp.random(seed=3)
MIB = 1024 * 1024


@pytest.fixture
def store(efs_root):
    return Store(str(efs_root))


def put(store: Store, name: str, data: bytes) -> ObjectRef:
    ref = ObjectRef("models", name)
    store.put(ref, [data], source="test")
    return ref


class CountingReader(HashingReader):
    """Records what the runner asked for."""

    def __init__(self, f):
        super().__init__(f)
        self.reads = 0

    def read(self, n: int = -1) -> bytes:
        self.reads += 1
        return super().read(n)


def test_the_runner_loads_by_path_and_copies_nothing(store, monkeypatch):
    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    data = MLP.onnx_bytes()
    ref = put(store, "mlp.onnx", data)
    with store.open(ref) as (manifest, f):
        reader = CountingReader(f)
        runner = onnx_runner.load(LoadedModel(manifest, reader))
        assert reader.reads == 0  # scanned in place, loaded by onnxruntime from the path
        assert reader.finish() == manifest.sha256 and reader.bytes_read == len(data)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(runner.predict({"x": x.tolist()})["y"]["data"], MLP.reference(x), rtol=1e-5)
    private = [d for d in made if d != ort_env.empty_dir()]
    assert len(private) == 1 and not os.path.exists(private[0])  # the symlink's directory is gone


def test_mapped_is_the_held_file_and_finish_unmaps_it(store):
    data = MLP.onnx_bytes()
    ref = put(store, "mlp.onnx", data)
    with store.open(ref) as (manifest, f):
        reader = HashingReader(f)
        with pytest.raises(RuntimeError):
            reader.mapped()
        assert reader.native_path() is not None
        mapping = reader.mapped()
        assert bytes(mapping) == data
        assert onnx_scan.scan(mapping).nodes == 5  # the scan releases its view of the mapping
        assert reader.finish() == manifest.sha256
        assert isinstance(mapping, mmap.mmap) and mapping.closed


@pytest.mark.parametrize("where", ["sibling", "into_the_store", "absolute", "itself"])
def test_without_the_scan_the_runtime_still_resolves_no_external_data(store, efs_root, monkeypatch, where):
    """Defence in depth: a model the scan let through (here: no scan at all)
    loads by path and still reads no other file, wherever its location points."""
    secret = efs_root / "models" / "secret.onnx"
    put(store, "secret.onnx", b"TOP-SECRET-WEIGHTS")
    private = os.path.join(tempfile.gettempdir(), "onnx-xxxxxxxx")  # where the symlink sits
    location = {
        "sibling": "secret.onnx",
        "into_the_store": os.path.relpath(secret, private),
        "absolute": str(secret),
        "itself": "model.onnx",
    }[where]
    monkeypatch.setattr(onnx_scan, "scan", lambda data, limits=None: None)
    ref = put(store, "hostile.onnx", external_data_models(location)["initializer"])
    with pytest.raises(ProcessingFailed) as caught:
        ModelCache(1 << 30).get(store, ref)
    message = str(caught.value)
    # The only path left is the model's own location string, never a server path.
    assert "hostile.onnx" in message and "TOP-SECRET" not in message
    assert str(efs_root) not in message and tempfile.gettempdir() + "/" not in message


def test_the_scan_refuses_external_data_before_the_runtime_sees_the_file(store, monkeypatch):
    import onnxruntime as ort

    seen = []
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: seen.append(a))
    ref = put(store, "hostile.onnx", external_data_models("secret.onnx")["initializer"])
    with pytest.raises(ModelRefused, match="external data"):
        ModelCache(1 << 30).get(store, ref)
    assert seen == []


def test_anonymous_rss_leaves_out_a_mapped_file(tmp_path):
    """The footprint counts what a session allocates, not a model file's
    pages mapped for hashing and scanning (they belong to the page cache)."""
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(32 * MIB))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        total, anon = ort_env.rss_bytes(), ort_env.anon_rss_bytes()
        assert sum(mapped[i] for i in range(0, len(mapped), mmap.PAGESIZE)) >= 0  # touch every page
        assert ort_env.rss_bytes() - total >= 30 * MIB
        assert ort_env.anon_rss_bytes() - anon < 8 * MIB
