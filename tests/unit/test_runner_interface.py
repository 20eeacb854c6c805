"""The runner interface every edge shares: metadata() from the loaded model,
infer() on decoded arrays with output selection (issue 18, shape of the code)."""

from __future__ import annotations

import numpy as np
import pytest

from chalicelib.edge import get_settings
from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.inference import resolve
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits
from chalicelib.signature import ONNX_PLATFORM, OPAQUE, TensorInfo
from chalicelib.store import Store
from tests.support.onnx_models import multi_io_model


@pytest.fixture
def store(efs_root):
    return Store(str(efs_root))


def runner(store: Store, name: str, data: bytes):
    ref = ObjectRef("models", name)
    store.put(ref, [data], source="test")
    return ModelCache(1 << 30, Limits.from_settings(get_settings())).get(store, ref)[0].runner


def test_metadata_reads_the_loaded_signature(store):
    meta = runner(store, "multi.onnx", multi_io_model()).metadata()
    assert meta.platform == ONNX_PLATFORM
    assert meta.inputs == (
        TensorInfo("a", "FP32", (-1, 3), "tensor(float)"),
        TensorInfo("ids", "INT64", (-1,), "tensor(int64)"),
    )
    assert [o.name for o in meta.outputs] == ["sum", "doubled"]
    assert runner(store, "blob.bin", b"bytes").metadata() == OPAQUE


def test_infer_returns_numpy_outputs_selected_and_in_order(store):
    model = runner(store, "multi.onnx", multi_io_model())
    feeds = {"a": np.ones((2, 3), dtype=np.float32), "ids": np.array([1, 2], dtype=np.int64)}
    everything = model.infer(feeds)
    assert list(everything) == ["sum", "doubled"] and everything["sum"].dtype == np.float32
    chosen = model.infer(feeds, ["doubled", "sum"])
    assert list(chosen) == ["doubled", "sum"] and chosen["doubled"].tolist() == [2, 4]
    # Checked and cast like any input: int32 ids feed the int64 input.
    assert model.infer({**feeds, "ids": np.array([3, 4], dtype=np.int32)}, ["doubled"])["doubled"].tolist() == [6, 8]
    with pytest.raises(InvalidRequest, match="Unknown output"):
        model.infer(feeds, ["nope"])
    with pytest.raises(InvalidRequest, match="twice"):
        model.infer(feeds, ["sum", "sum"])
    with pytest.raises(InvalidRequest, match="dimension 1 must be 3"):
        model.infer({**feeds, "a": np.ones((2, 4), dtype=np.float32)})
    with pytest.raises(InvalidRequest, match="opaque"):
        runner(store, "blob.bin", b"bytes").infer(feeds)


def test_resolve_finds_kept_versions_only(store):
    ref = ObjectRef("models", "multi.onnx")
    store.put(ref, [multi_io_model()], source="test")
    models = ModelCache(1 << 30, Limits.from_settings(get_settings()))
    cached, _ = resolve(models, store, ref, 1)
    assert cached.manifest.version == 1
    with pytest.raises(NotFound, match="Version 2 of 'multi.onnx' is not kept"):
        resolve(models, store, ref, 2)
    with pytest.raises(NotFound):
        resolve(models, store, ObjectRef("models", "nope.onnx"), None)
