"""Settings are read at the edge, and chalicelib.edge.reset() is the one reset."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import chalicelib
from chalicelib import edge

CHALICELIB = Path(chalicelib.__file__).parent
# The edge: the composition module, and the HTTP decorator that bounds every
# request by REQUEST_TIMEOUT_SECONDS before the handler runs.
EDGE_MODULES = {"edge.py", "http.py"}


def _modules() -> list[object]:
    names = [m.name for m in pkgutil.walk_packages([str(CHALICELIB)], prefix="chalicelib.")]
    return [importlib.import_module(name) for name in names]


def _process_caches() -> set[str]:
    """Every functools cache defined at module level in chalicelib."""
    found = set()
    for module in _modules():
        for attr, value in vars(module).items():
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == module.__name__:
                found.add(f"{module.__name__}.{attr}")
    return found


_CONTAINERS = ("dict", "list", "set", "OrderedDict", "defaultdict", "ThreadPoolExecutor")


def _module_state() -> set[str]:
    """Module globals chalicelib rebinds at run time (``global x``), and module
    level containers it fills (``_x = {}``): per-process state."""
    found = set()
    for path in sorted(CHALICELIB.rglob("*.py")):
        module = ".".join(path.relative_to(CHALICELIB.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text())
        found |= {f"{module}.{n}" for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            empty = isinstance(value, (ast.Dict, ast.List, ast.Set)) and not (
                getattr(value, "keys", None) or getattr(value, "elts", None)
            )
            made = (
                isinstance(value, ast.Call)
                and getattr(value.func, "id", getattr(value.func, "attr", "")) in _CONTAINERS
            )
            if empty or made:
                found |= {f"{module}.{t.id}" for t in targets if isinstance(t, ast.Name)}
    return found


def test_every_process_cache_is_reset_or_kept_for_a_reason():
    reset = {f"{c.__module__}.{c.__name__}" for c in edge.CACHES} | set(edge.RESETS)
    state = _process_caches() | _module_state()
    assert state - reset - set(edge.KEPT) == set(), "per-process state edge.reset() neither clears nor lists in KEPT"
    assert (set(edge.KEPT) | reset) <= state, "edge names state that is gone"


def test_reset_forgets_the_settings_and_what_was_built_from_them(monkeypatch, tmp_path):
    from chalicelib import s3
    from chalicelib.jobs import queue

    monkeypatch.setenv("EFS_ROOT", str(tmp_path / "one"))
    monkeypatch.setenv("MODEL_CACHE_BYTES", "1000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    edge.reset()
    store, models = edge.get_store(), edge.model_cache()
    s3.client(edge.get_settings()), queue.client()
    assert (store.root, models.budget_bytes) == (str(tmp_path / "one"), 1000)

    monkeypatch.setenv("EFS_ROOT", str(tmp_path / "two"))
    monkeypatch.setenv("MODEL_CACHE_BYTES", "2000")
    assert edge.get_store() is store  # kept until the reset
    edge.reset()
    assert s3._clients == {} and queue._client is None
    assert edge.get_settings().efs_root == str(tmp_path / "two")
    assert edge.get_store().root == str(tmp_path / "two") and edge.get_store() is not store
    assert edge.model_cache().budget_bytes == 2000


def test_nothing_below_the_edge_reads_the_settings():
    readers = []
    for path in sorted(CHALICELIB.rglob("*.py")):
        if path.name in EDGE_MODULES and path.parent == CHALICELIB:
            continue
        text = path.read_text()
        if re.search(r"\bget_settings\b|\bload_settings\(\)", text) and path.name != "config.py":
            readers.append(str(path.relative_to(CHALICELIB)))
    assert readers == [], "these modules read the settings themselves instead of being handed them"
