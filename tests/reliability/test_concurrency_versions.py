"""Writers ingesting and rolling back one model while readers pin its versions
(issue 18, finding 5; docs/design/versions.md).

Real 'spawn' processes on one store folder, like Lambdas on one EFS. Readers
take no lock: they must still never see a torn version or a number whose
bytes change, and a version pruned under them is a clean "not kept".
"""

from __future__ import annotations

import json
import os

from tests.reliability.test_concurrency import _join
from tests.support import reliability as R
from tests.support import version_workers as V


def test_pinned_readers_during_ingests_and_rollbacks(tmp_path):
    root = str(tmp_path / "efs")
    os.mkdir(root)
    ctx = R.spawn()
    go, stop = ctx.Event(), ctx.Event()
    writers = [
        ctx.Process(target=V.version_writer, args=(root, w, 40, go, str(tmp_path / f"w{w}.json"))) for w in range(3)
    ]
    readers = [
        ctx.Process(target=V.pinned_reader, args=(root, r, go, stop, str(tmp_path / f"r{r}.json"))) for r in range(3)
    ]
    for p in writers + readers:
        p.start()
    go.set()
    _join(writers, 240)
    stop.set()
    _join(readers, 60)
    made: dict[str, str] = {}
    rollbacks = 0
    for w in range(3):
        with open(tmp_path / f"w{w}.json") as f:
            out = json.load(f)
        assert not made.keys() & out["made"].keys(), "a version number was given twice"
        made.update(out["made"])
        rollbacks += out["rollbacks"]
    reads = 0
    for r in range(3):
        with open(tmp_path / f"r{r}.json") as f:
            out = json.load(f)
        for n, digest in out["seen"].items():
            assert made[n] == digest, f"a reader saw version {n} with bytes no writer gave it"
        reads += out["reads"]
    print(f"{len(made)} versions made, {rollbacks} rollbacks, {reads} pinned reads")
    assert rollbacks >= 5 and reads >= 50, "too little overlap for the test to mean anything"
    # The end state: every kept version whole, numbers consistent, no debris.
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store, ref = Store(root), ObjectRef("models", "m.bin")
    current = store.manifest(ref)
    assert current.latest_version == max(map(int, made)) and len(current.kept()) == 3
    for n in current.kept():
        with store.open(ref, n) as (m, f):
            assert R.sha(f.read()) == m.sha256 == made[str(n)]
    assert store.reclaim() == 0 and R.debris(root) == []
