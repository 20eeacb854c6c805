"""Crash debris of any name is swept by the hourly schedule, safely (issue 9 #6).

An 80 MiB temp file left by a SIGKILLed ingest of name A used to stay until
the next write of A. The scheduled ``reclaim_debris`` removes it once it is
older than ``DEBRIS_MIN_AGE_SECONDS``, with no later write to A, and spares
younger files (which a live writer may still own).
"""

from __future__ import annotations

import os
import signal
import time

from tests.support import reliability as R

MIB = 1 << 20


def _temps(root):
    return [os.path.join(root, "models", f) for f in os.listdir(os.path.join(root, "models")) if R.TEMP_RE.match(f)]


def _sweep(client):
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    payload = client.lambda_.invoke("reclaim_debris", event).payload
    # Beside the reclaim, the retention sweep reports what expired (nothing here).
    assert payload.pop("expired") == {"outputs": 0, "jobs": 0}
    return payload


def test_sigkilled_writers_temp_is_swept_by_the_schedule(client, efs_root, monkeypatch):
    root = str(efs_root)
    # Another name exists, so the sweep has real objects to leave alone.
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    Store(root).put(ObjectRef("models", "keep.bin"), [b"keep"], source="inline")
    ctx = R.spawn()
    ready = ctx.Event()
    writer = ctx.Process(target=R.crash_writer, args=(root, "a.bin", "big", 80 * MIB, MIB, 0.02, ready))
    writer.start()
    assert ready.wait(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = _temps(root)
        if temps and os.path.getsize(temps[0]) >= 16 * MIB:
            break
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(30)
    assert writer.exitcode == -signal.SIGKILL
    temps = _temps(root)
    assert len(temps) == 1 and os.path.getsize(temps[0]) >= 16 * MIB

    from chalicelib import edge

    monkeypatch.setenv("DEBRIS_MIN_AGE_SECONDS", "600")
    edge.reset()
    assert _sweep(client) == {"removed": 0}, "a young temp file may belong to a live writer"
    assert _temps(root) == temps
    old = time.time() - 601
    os.utime(temps[0], (old, old))
    assert _sweep(client) == {"removed": 1}
    assert R.debris(root) == [] and not os.path.exists(os.path.join(root, "models", "a.bin"))
    assert Store(root).read_bytes(ObjectRef("models", "keep.bin"))[1] == b"keep"
