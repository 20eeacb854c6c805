"""Run one hostile /predict in a fresh process and report what it cost.

``python -m tests.support.hostile_run SPEC.json`` where the spec names the
model file, the inputs, the settings (environment) and how many requests to
send. The real app runs through ``chalice.test.Client``; the process prints
one JSON line: every response's status and body (a fileId ``@name`` names
a stored input by its name), the peak RSS and the wall time. The parent
test enforces a hard timeout on this process, so a hang is a failure, not a
stuck suite.

Peak RSS is the whole process tree's: this process's peak plus the largest
peak of any inference worker it ran (reaped workers through
``RUSAGE_CHILDREN``, the live one through its ``VmHWM``); one worker runs at
a time, so the sum bounds the tree at any instant. This process's own
peak is its ``VmHWM``: its ``ru_maxrss`` starts at the test runner's peak
when it was spawned (the exec replaces a memory map shared with the
spawner), which under ``make test`` is hundreds of MiB that were never this
process's. A reaped worker's ``ru_maxrss`` starts at this process's peak at
its spawn in the same way: an upper bound. With ``"idle_after":
true`` each response is followed by a one-second settle and then one
second in which the tree's CPU time is measured (``idle_cpu``): work that
outlived its answer shows there. ``"concurrent": true`` sends the requests
at once, one thread each.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

_TICK = os.sysconf("SC_CLK_TCK")


def _worker_pid() -> int | None:
    try:
        from chalicelib.runners import supervisor
    except ImportError:  # a service without an inference worker
        return None

    return supervisor.shared().pid() if supervisor.shared.cache_info().currsize else None


def _hwm(pid: int | str) -> int:
    """``VmHWM``: a process's own peak RSS (per memory map, so unlike
    ``ru_maxrss`` not inherited from whoever spawned it)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _live_worker(field: str) -> int:
    pid = _worker_pid()
    if pid is None:
        return 0
    if field == "hwm":
        return _hwm(pid)
    try:
        if field == "cpu":
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return int(parts[11]) + int(parts[12])
    except OSError:
        pass
    return 0


def tree_cpu_seconds() -> float:
    """CPU seconds of this process, its reaped children and the live worker."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _live_worker("cpu") / _TICK


def tree_peak_rss() -> int:
    """This process's peak RSS plus the largest peak of any worker."""
    own = _hwm("self")
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return own + max(reaped, _live_worker("hwm"))


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ.update(spec.get("env", {}))
    from chalice.test import Client

    import app as app_module

    responses = []
    with Client(app_module.app) as client:
        from chalicelib.edge import get_store
        from chalicelib.names import ObjectRef

        with open(spec["model_path"], "rb") as f:
            # Straight into the store: models may be past the request size limit.
            model = f.read()
        for name in [spec["model"], *spec.get("copies", [])]:
            get_store().put(ObjectRef("models", name), [model], source="hostile")
        for name, path in spec.get("extra_models", []):
            with open(path, "rb") as f:
                get_store().put(ObjectRef("models", name), [f.read()], source="hostile")
        file_ids = {}
        for name, size in spec.get("store_inputs", []):
            chunk = b"\0" * (1 << 20)
            chunks = (chunk[: min(len(chunk), size - i)] for i in range(0, size, len(chunk)))
            file_ids["@" + name] = get_store().put(ObjectRef("inputs", name), chunks, source="hostile").manifest.fileId
        for extra in spec.get("ingest", []):
            r = client.http.post("/ingest", headers={"Content-Type": "application/json"}, body=json.dumps(extra))
            assert r.status_code == 200, r.body
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        def send(request: dict, idle: bool = False) -> dict:
            request = {**request, "fileId": file_ids.get(request["fileId"], request["fileId"])}
            t = time.monotonic()
            r = client.http.post("/predict", headers={"Content-Type": "application/json"}, body=json.dumps(request))
            answer = {
                "status": r.status_code,
                "body": r.body.decode(errors="replace")[:4000],
                "seconds": round(time.monotonic() - t, 3),
            }
            if idle:
                time.sleep(1.0)
                before = tree_cpu_seconds()
                time.sleep(1.0)
                answer["idle_cpu"] = round(tree_cpu_seconds() - before, 3)
            return answer

        started = time.monotonic()
        if spec.get("concurrent"):
            slots: list = [None] * len(spec["requests"])
            threads = [
                threading.Thread(target=lambda i=i, rq=rq: slots.__setitem__(i, send(rq)))
                for i, rq in enumerate(spec["requests"])
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            responses = slots
            time.sleep(1.0)
            before = tree_cpu_seconds()
            time.sleep(1.0)
            idle = round(tree_cpu_seconds() - before, 3)
        else:
            responses = [send(request, bool(spec.get("idle_after"))) for request in spec["requests"]]
            idle = None
        for request in spec.get("after", []):
            responses.append(send(request))
    print(
        json.dumps(
            {
                "responses": responses,
                "peak_rss": tree_peak_rss(),
                "own_peak_rss": _hwm("self"),
                "baseline_rss": baseline,
                "idle_cpu": idle,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
