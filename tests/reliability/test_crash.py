"""SIGKILL writers mid-ingest: nothing torn is ever visible, debris is reclaimed.

Random kills land anywhere in a large, slowly streamed ingest (open, write,
fsync, intent, renames); deterministic kills hit each step of the commit,
including between the two renames, to prove the roll-forward/back of
``.pending``.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.support import reliability as R

MIB = 1 << 20
NAME = "big.bin"


def _state(root):
    """(manifest sha, data sha) as a reader sees them; Store.open itself
    finishes a dead writer's half-done commit first."""
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    try:
        with Store(root).open(ObjectRef("models", NAME)) as (m, f):
            data = f.read()
    except FileNotFoundError:
        return None
    assert (R.sha(data), len(data)) == (m.sha256, m.size), "torn object visible after a crash"
    # The fileId handed out for it resolves (the index is written before the commit).
    assert Store(root).lookup_file_id(m.fileId) == ObjectRef("models", NAME)
    return m.sha256, m.version


def _next_ingest(root, seed, size):
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    data = R.content(seed, size)
    res = Store(root).put(ObjectRef("models", NAME), [data], source="inline")
    assert res.status in ("created", "updated") and res.manifest.sha256 == R.sha(data)
    return res.manifest


def random_kills(root, kills_wanted, sizes, rng):
    """Kill streaming writers at random instants until ``kills_wanted``
    of them died mid-flight; alternate recovery by the next writer and by
    Store.reclaim(). Returns (kills, kills that left debris, completed)."""
    from chalicelib.store import Store

    ctx = R.spawn()
    prev = None  # (sha, version) visible before the attempt
    kills = dirty = completed = attempt = 0
    while kills < kills_wanted:
        attempt += 1
        assert attempt < kills_wanted * 3, "writers finished before they could be killed"
        size = rng.choice(sizes)
        seed = ("attempt", attempt)
        ready = ctx.Event()
        p = ctx.Process(target=R.crash_writer, args=(root, NAME, seed, size, 64 * 1024, 0.004, ready))
        p.start()
        assert ready.wait(30)
        # A streamed 4 MiB ingest takes ~0.15 s here (64 KiB chunks, 0-4 ms apart); the window also
        # covers the commit and sometimes a finished write.
        time.sleep(rng.uniform(0, 0.15 * size / (4 * MIB)))
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        attempt_sha = R.sha(R.content(seed, size))
        if p.exitcode == -signal.SIGKILL:
            kills += 1
        else:
            assert p.exitcode == 0
            completed += 1
        now = _state(root)
        if now is not None and now[0] == attempt_sha:
            # It got past the commit point before dying: the new version,
            # whole, and exactly one version later.
            assert now[1] == (prev[1] + 1 if prev else 1)
        else:
            assert now == prev, "a crash changed or lost the previous version"
        left = R.debris(root)
        dirty += bool(left)
        if attempt % 2:
            removed = Store(root).reclaim()
            assert removed >= sum(1 for d in left if not d.endswith(".pending"))
        else:
            m = _next_ingest(root, ("next", attempt), rng.randrange(1, 64) * 1024)
            assert m.version == (now[1] + 1 if now else 1)
        assert R.debris(root) == [], f"debris not reclaimed after a kill: {left}"
        prev = _state(root)
    return kills, dirty, completed


def test_random_sigkill_during_large_ingest(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    kills, dirty, completed = random_kills(root, 50, [4 * MIB], random.Random(5))
    print(f"{kills} SIGKILLs ({dirty} left debris), {completed} writers finished first")
    assert kills >= 50
    assert dirty >= 10, "kills never landed mid-write: the test would not catch leftovers"


@pytest.mark.slow
def test_random_sigkill_stress(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    kills, dirty, _ = random_kills(root, 200, [4 * MIB, 8 * MIB, 16 * MIB], random.Random(11))
    assert kills >= 200 and dirty >= 40


POINTS = ["after-data-fsync", "before-intent", "before-data-rename", "after-data-rename", "after-manifest-rename"]
# After these points the new object is already in place: roll forward.
ROLLS_FORWARD = {"after-data-rename", "after-manifest-rename"}


@pytest.mark.parametrize("existing", [False, True], ids=["new-name", "replace"])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("recover", ["reader", "reclaim", "writer"])
def test_kill_at_each_commit_step(tmp_path, point, existing, recover):
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    root = str(tmp_path / "efs")
    os.mkdir(root)
    before = _next_ingest(root, "v1", 3000) if existing else None
    p = R.spawn().Process(target=R.crash_at, args=(root, NAME, "v2", 5000, point))
    p.start()
    p.join(30)
    assert p.exitcode == -signal.SIGKILL, "the hook did not fire"
    new_sha = R.sha(R.content("v2", 5000))
    assert R.debris(root), "a kill inside the commit must leave something to recover"
    if recover == "reader":
        got = _state(root)
    elif recover == "reclaim":
        Store(root).reclaim()
        assert R.debris(root) == [], "reclaim left debris"
        got = _state(root)
    else:
        m = Store(root).put(ObjectRef("models", NAME), [R.content("v3", 700)], source="inline")
        assert m.status in ("created", "updated")
        got = (m.manifest.sha256, m.manifest.version)
    if recover == "writer":
        rolled = 1 if point in ROLLS_FORWARD else 0
        assert got == (R.sha(R.content("v3", 700)), (1 if existing else 0) + rolled + 1)
    elif point in ROLLS_FORWARD:
        assert got == (new_sha, 2 if existing else 1), "committed data not rolled forward"
    else:
        assert got == ((before.sha256, 1) if existing else None), "uncommitted write became visible"
    if recover != "reader":
        assert R.debris(root) == []
