"""The scan done once, at ingest: recorded in the manifest beside the bytes'
sha256, trusted by a load of those bytes under limits it is within, and never
trusted when the model is replaced, the scanner changes, the limits tighten
or the file no longer matches its manifest."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from chalicelib.edge import get_settings
from chalicelib.errors import ModelRefused, StoreCorrupt
from chalicelib.ingest import ingest_bytes
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits, onnx_scan
from chalicelib.store import Store
from tests.support.onnx_models import Mlp, log_model

MLP = Mlp.random(seed=4)
REF = ObjectRef("models", "mlp.onnx")


@pytest.fixture
def store(efs_root):
    return Store(str(efs_root))


@pytest.fixture
def walks(monkeypatch):
    """Every buffer the scanner walks (the real scan still runs)."""
    seen: list[int] = []
    real = onnx_scan.scan

    def counting(data, limits=None):
        seen.append(len(memoryview(data)))
        return real(data, limits)

    monkeypatch.setattr(onnx_scan, "scan", counting)
    return seen


def ingest(store: Store, data: bytes, ref: ObjectRef = REF):
    return ingest_bytes(store, get_settings(), ref, data).manifest


def load(store: Store, limits: Limits | None = None):
    return ModelCache(1 << 30, limits or Limits.from_settings(get_settings())).get(store, REF)[0]


def rewrite_manifest(efs_root, **fields) -> None:
    path = efs_root / ".meta" / "models" / "mlp.onnx.json"
    doc = json.loads(path.read_bytes())
    doc.update(fields)
    path.write_bytes(json.dumps(doc).encode())


def test_ingest_records_the_scan_beside_the_sha256(store):
    data = MLP.onnx_bytes()
    manifest = ingest(store, data)
    assert manifest.scan == onnx_scan.scan(data).to_json()
    assert manifest.scan["version"] == onnx_scan.SCAN_VERSION and manifest.scan["nodes"] == 5
    assert store.manifest(REF).scan == manifest.scan  # committed with the bytes


def test_a_load_under_the_recorded_scan_does_not_walk_the_bytes_again(store, walks):
    ingest(store, MLP.onnx_bytes())
    walks.clear()
    runner = load(store).runner
    assert walks == []
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(runner.predict({"x": x.tolist()})["y"]["data"], MLP.reference(x), rtol=1e-5)


def test_a_replaced_model_carries_the_report_of_its_own_bytes(store):
    first = ingest(store, MLP.onnx_bytes())
    other = log_model()
    second = ingest(store, other)
    assert second.sha256 != first.sha256 and second.scan != first.scan
    assert second.scan == onnx_scan.scan(other).to_json()
    # An opaque file over an ONNX model: no report of the old bytes is left behind.
    blob = ObjectRef("models", "blob.bin")
    assert ingest(store, MLP.onnx_bytes(), blob).scan is not None
    assert ingest(store, b"not a model, served by its checksum", blob).scan is None


def test_a_report_of_another_scanner_version_is_not_trusted(store, efs_root, walks):
    manifest = ingest(store, MLP.onnx_bytes())
    rewrite_manifest(efs_root, scan={**manifest.scan, "version": onnx_scan.SCAN_VERSION + 1})
    walks.clear()
    load(store)
    assert len(walks) == 1  # walked at load, as before reports were recorded


def report_doc(**changes):
    doc = {"version": onnx_scan.SCAN_VERSION, "tensors": 1, "graphs": 1, "nodes": 1}
    return {**doc, "inlinedNodes": 0, "nesting": 0, "tensorBytes": 0, **changes}


@pytest.mark.parametrize(
    "doc",
    [None, "scan", {"version": onnx_scan.SCAN_VERSION}, report_doc(nodes=-1), report_doc(nodes=True)]
    + [report_doc(nodes=1.5), report_doc(tensorBytes=1 << 62), report_doc(version=0)],
)
def test_malformed_reports_are_not_trusted(doc):
    assert onnx_scan.ScanReport.from_json(doc) is None
    assert onnx_scan.ScanReport.from_json(report_doc()) is not None


def test_report_round_trip_and_within():
    report = onnx_scan.scan(MLP.onnx_bytes())
    assert onnx_scan.ScanReport.from_json(report.to_json()) == report
    assert report.within(onnx_scan.ScanLimits())
    assert report.within(onnx_scan.ScanLimits(max_nodes=5, max_nesting=1, max_tensor_bytes=report.tensor_bytes))
    assert not report.within(onnx_scan.ScanLimits(max_nodes=4))
    assert not report.within(onnx_scan.ScanLimits(max_tensor_bytes=report.tensor_bytes - 1))
    assert not replace(report, nesting=2).within(onnx_scan.ScanLimits(max_nesting=1))


def test_limits_tightened_since_ingest_send_the_load_back_to_the_walk(store, walks):
    ingest(store, MLP.onnx_bytes())
    walks.clear()
    with pytest.raises(ModelRefused, match="MAX_MODEL_NODES"):
        load(store, replace(Limits.from_settings(get_settings()), max_model_nodes=3))
    assert len(walks) == 1


def test_bytes_that_no_longer_match_the_manifest_are_never_served(store, efs_root, walks):
    """The report speaks for the bytes the sha256 names: other bytes behind
    it (tampered in place, same size, still loadable) load without a walk
    but are refused by the hash before anything is served."""
    data = MLP.onnx_bytes()
    ingest(store, data)
    tampered = Mlp.random(seed=6).onnx_bytes()
    assert len(tampered) == len(data) and tampered != data
    with open(efs_root / "models" / "mlp.onnx", "r+b") as f:
        f.write(tampered)
    cache = ModelCache(1 << 30, Limits.from_settings(get_settings()))
    with pytest.raises(StoreCorrupt, match="does not match its manifest"):
        cache.get(store, REF)
    with pytest.raises(StoreCorrupt):
        cache.get(store, REF)  # nothing was cached: the next request checks again
