"""PRELOAD_MODELS: which models, loaded at init within PRELOAD_INIT_SECONDS, the rest joined later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalicelib import edge, preload
from chalicelib.edge import get_settings
from chalicelib.model_cache import ModelCache
from chalicelib.names import ObjectRef
from chalicelib.runners import Limits
from chalicelib.store import Store
from tests.support.hostile_models import node_chain
from tests.support.onnx_models import Mlp

ROOT = Path(__file__).resolve().parents[2]
MLP = Mlp.random(seed=5).onnx_bytes()


@pytest.fixture
def store(efs_root):
    return Store(str(efs_root))


def put(store: Store, name: str, data: bytes) -> ObjectRef:
    ref = ObjectRef("models", name)
    store.put(ref, [data], source="test")
    return ref


def settings(monkeypatch, **env: str):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    edge.reset()
    return get_settings()


def cache_for(s) -> ModelCache:
    return ModelCache(s.model_cache_bytes, Limits.from_settings(s))


def test_names_are_taken_in_order_and_unknown_ones_skipped(store):
    for name, size in (("a.onnx", 10), ("b.onnx", 20), ("c.onnx", 30)):
        put(store, name, b"x" * size)
    manifests = store.list("models")
    assert [r.name for r in preload.chosen(" c.onnx, models/a.onnx,nope.onnx,../x,", manifests, 10**9)] == [
        "c.onnx",
        "a.onnx",
    ]
    assert preload.chosen("", manifests, 10**9) == []


def test_star_takes_every_model_by_name_that_still_fits_the_budget(store):
    for name, size in (("a.onnx", 10), ("b.onnx", 40), ("c.onnx", 30)):
        put(store, name, b"x" * size)
    manifests = store.list("models")
    assert [r.name for r in preload.chosen("*", manifests, 10**9)] == ["a.onnx", "b.onnx", "c.onnx"]
    assert [r.name for r in preload.chosen("*", manifests, 45)] == ["a.onnx", "c.onnx"]  # b would pass 45, c fits


def test_a_preloaded_model_is_warm_for_the_first_request(store, monkeypatch):
    ref = put(store, "mlp.onnx", MLP)
    s = settings(monkeypatch, PRELOAD_MODELS="mlp.onnx")
    cache = cache_for(s)
    thread = preload.at_init(s, lambda: store, lambda: cache)
    assert thread is not None and not thread.is_alive()
    cached, hit = cache.get(store, ref)
    assert hit and cached.runner.valid()


def test_init_waits_no_longer_than_its_bound_and_the_first_request_joins_the_load(store, monkeypatch):
    # 50,000 nodes: seconds of session creation, past a 0.3 s init bound.
    ref = put(store, "slow.onnx", node_chain(50_000))
    s = settings(monkeypatch, PRELOAD_MODELS="slow.onnx", PRELOAD_INIT_SECONDS="0.3")
    cache = cache_for(s)
    started = time.monotonic()
    thread = preload.at_init(s, lambda: store, lambda: cache)
    assert time.monotonic() - started < 1.5
    assert thread is not None and thread.is_alive()  # still loading, in the background
    cached, hit = cache.get(store, ref)  # joins that load rather than starting another
    assert hit and cached.runner.valid()
    thread.join(30)
    assert not thread.is_alive()


def test_nothing_named_builds_nothing(monkeypatch):
    s = settings(monkeypatch, PRELOAD_MODELS=" ")

    def never():
        raise AssertionError("the store was built")

    assert preload.at_init(s, never, never) is None


def test_importing_the_app_preloads_in_the_worker(store, efs_root, tmp_path):
    put(store, "mlp.onnx", MLP)
    code = (
        "import json, app\n"
        "from chalicelib.edge import get_store, model_cache\n"
        "from chalicelib.runners import supervisor\n"
        "from chalicelib.names import ObjectRef\n"
        "cached, hit = model_cache().get(get_store(), ObjectRef('models', 'mlp.onnx'))\n"
        "print(json.dumps({'hit': hit, 'worker': supervisor.shared().pid() is not None}))\n"
    )
    env = {**os.environ, "EFS_ROOT": str(efs_root), "MODEL_BUCKET": "", "PRELOAD_MODELS": "mlp.onnx"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"hit": True, "worker": True}
