"""Run one hostile /predict in a fresh process and report what it cost.

``python -m tests.support.hostile_run SPEC.json`` where the spec names the
model file, the inputs, the settings (environment) and how many requests to
send. The real app runs through ``chalice.test.Client``; the process prints
one JSON line: every response's status and body (a fileId ``@name`` names
a stored input by its name), the peak RSS (``ru_maxrss``)
and the wall time. The parent test enforces a hard timeout on this process,
so a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ.update(spec.get("env", {}))
    from chalice.test import Client

    import app as app_module

    responses = []
    with Client(app_module.app) as client:
        from chalicelib.names import ObjectRef
        from chalicelib.store import get_store

        with open(spec["model_path"], "rb") as f:
            # Straight into the store: models may be past the request size limit.
            model = f.read()
        for name in [spec["model"], *spec.get("copies", [])]:
            get_store().put(ObjectRef("models", name), [model], source="hostile")
        file_ids = {}
        for name, size in spec.get("store_inputs", []):
            chunk = b"\0" * (1 << 20)
            chunks = (chunk[: min(len(chunk), size - i)] for i in range(0, size, len(chunk)))
            file_ids["@" + name] = get_store().put(ObjectRef("inputs", name), chunks, source="hostile").manifest.fileId
        for extra in spec.get("ingest", []):
            r = client.http.post("/ingest", headers={"Content-Type": "application/json"}, body=json.dumps(extra))
            assert r.status_code == 200, r.body
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        started = time.monotonic()
        for request in spec["requests"]:
            request = {**request, "fileId": file_ids.get(request["fileId"], request["fileId"])}
            t = time.monotonic()
            r = client.http.post("/predict", headers={"Content-Type": "application/json"}, body=json.dumps(request))
            responses.append(
                {
                    "status": r.status_code,
                    "body": r.body.decode(errors="replace")[:4000],
                    "seconds": round(time.monotonic() - t, 3),
                }
            )
    print(
        json.dumps(
            {
                "responses": responses,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "baseline_rss": baseline,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
