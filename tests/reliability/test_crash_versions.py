"""SIGKILL a rollback, a pruning ingest and a versioned delete at each step
(issue 18, finding 5; docs/design/versions.md).

After any kill, every reader sees either the state before or the state
after, whole: the current version and every kept version read back with
their own bytes, whoever recovers (a reader, the hourly sweep, the next
writer), and the sweep leaves no debris and no version file that no
manifest keeps.
"""

from __future__ import annotations

import hashlib
import os
import signal

import pytest

from tests.support import reliability as R
from tests.support import version_workers as V

NAME = "m.bin"
DATA = {1: b"one" * 1000, 2: b"two" * 1100, 3: b"three" * 700, 4: b"four" * 900}


def _store(root):
    from chalicelib.store import Store

    return Store(root)


def _ref():
    from chalicelib.names import ObjectRef

    return ObjectRef("models", NAME)


def _setup(root):
    store = _store(root)
    for n in (1, 2, 3):
        assert store.put(_ref(), [DATA[n]], source="inline").manifest.version == n


def _state(root):
    """(current version, kept versions), after checking every kept version
    reads back whole with its own bytes. Store.open itself finishes a dead
    writer's half-done commit first."""
    store = _store(root)
    with store.open(_ref()) as (current, f):
        assert f.read() == DATA[current.version], "the current object is not its version's bytes"
    kept = sorted(current.kept())
    for n in kept:
        with store.open(_ref(), n) as (m, f):
            data = f.read()
        assert m.version == n and data == DATA[n] and hashlib.sha256(data).hexdigest() == m.sha256
    with open(store.path(_ref()), "rb") as f:
        assert f.read() == DATA[current.version], "the efsPath is not the current version"
    return current.version, kept


def _version_files(root):
    d = os.path.join(root, ".meta", "versions", "models")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _kill(target, *args):
    p = R.spawn().Process(target=target, args=args)
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL, "the hook did not fire"


ROLLBACK_POINTS = ["after-keep-link", "after-stage-link", "after-intent", "after-data-rename", "after-manifest-rename"]
ROLLS_FORWARD = {"after-data-rename", "after-manifest-rename"}


@pytest.mark.parametrize("point", ROLLBACK_POINTS)
@pytest.mark.parametrize("recover", ["reader", "pinned-reader", "reclaim", "writer"])
def test_kill_a_rollback_at_each_step(tmp_path, point, recover):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    _setup(root)
    _kill(V.rollback_at, root, NAME, 1, point)
    forward = point in ROLLS_FORWARD
    if recover == "pinned-reader":
        # First to touch the name: a reader pinning the version that was current
        # (after the swap, the object at the name is no longer it).
        with _store(root).open(_ref(), 3) as (m, f):
            assert (m.version, f.read()) == (3, DATA[3])
        recover = "reader"
    if recover == "reader":
        assert _state(root) == ((1 if forward else 3), [1, 2, 3])
        return
    if recover == "reclaim":
        _store(root).reclaim()
        assert _state(root) == ((1 if forward else 3), [1, 2, 3])
    else:
        m = _store(root).put(_ref(), [DATA[4]], source="inline").manifest
        assert m.version == 4, "a number was reused after a crashed rollback"
        assert _state(root) == (4, [2, 3, 4])
        _store(root).reclaim()
    assert R.debris(root) == [], "debris left after a crashed rollback"
    _only_kept_version_files(root)


def _only_kept_version_files(root):
    """Every kept version but the current has its file; no other version has
    one (the current may: a rollback, or a step 2 that outlived its commit, linked it)."""
    current, kept = _state(root)
    files = set(_version_files(root))
    assert files <= {f"{NAME}.v{n}" for n in kept}, f"a version no manifest keeps is still on the store: {files}"
    assert {f"{NAME}.v{n}" for n in kept if n != current} <= files


@pytest.mark.parametrize("point", ["after-keep-link", "after-intent", "after-data-rename", "before-prune-unlink"])
def test_kill_a_pruning_ingest_at_each_step(tmp_path, point):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    _setup(root)
    _kill(V.ingest_at, root, NAME, DATA[4], point)
    forward = point in {"after-data-rename", "before-prune-unlink"}
    assert _state(root) == ((4, [2, 3, 4]) if forward else (3, [1, 2, 3]))
    _store(root).reclaim()
    assert R.debris(root) == []
    # The version that fell out is gone once the sweep ran, whatever the kill left.
    _only_kept_version_files(root)


def test_kill_a_delete_after_its_commit_point_leaves_no_version_behind(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    _setup(root)
    _kill(V.delete_at, root, NAME, "after-manifest-unlink")
    with pytest.raises(FileNotFoundError):
        _store(root).open(_ref(), 2).__enter__()
    assert _store(root).reclaim() >= 2
    assert _version_files(root) == [] and not os.path.exists(os.path.join(root, "models", NAME))
    # The name again: version 1 of a new life, nothing of the old one served.
    m = _store(root).put(_ref(), [DATA[4]], source="inline").manifest
    assert (m.version, sorted(m.kept())) == (1, [1])
