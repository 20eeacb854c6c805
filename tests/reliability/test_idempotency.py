"""At-least-once delivery: redelivered S3 events and repeated predicts are no-ops."""

from __future__ import annotations

import json
import os

from tests.support import reliability as R

KEY = "models/event-model.bin"


def _only_object(root, name="event-model.bin"):
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    store = Store(root)
    assert [m.key for m in store.list("models")] == [f"models/{name}"], "exactly one stored object"
    m, data = store.read_bytes(ObjectRef("models", name))
    assert R.debris(root) == []
    return m, data


def test_same_s3_event_ten_times_sequentially(client, bucket, s3_client, efs_root):
    body = R.content("event", 300_000)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=body)
    event = client.events.generate_s3_event(bucket=bucket, key=KEY)
    statuses = [r["status"] for _ in range(10) for r in client.lambda_.invoke("on_object_created", event).payload]
    assert statuses == ["created"] + ["exists"] * 9
    m, data = _only_object(str(efs_root))
    assert m.version == 1 and data == body and m.etag and m.source == f"s3://{bucket}/{KEY}"


def test_same_s3_event_ten_times_concurrently(client, bucket, s3_client, efs_root, tmp_path):
    body = R.content("event-concurrent", 2_000_000)
    s3_client.put_object(Bucket=bucket, Key=KEY, Body=body)
    event = client.events.generate_s3_event(bucket=bucket, key=KEY)
    env = {
        k: os.environ[k]
        for k in (
            "AWS_ENDPOINT_URL_S3",
            "MODEL_BUCKET",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    ctx = R.spawn()
    go = ctx.Event()
    procs = [
        ctx.Process(target=R.deliver_event, args=(str(efs_root), env, event, go, str(tmp_path / f"{i}.json")))
        for i in range(10)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 10
    outcomes = [json.loads((tmp_path / f"{i}.json").read_text())[0] for i in range(10)]
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["created"] + ["exists"] * 9, statuses
    assert all(o["detail"] == "version 1" for o in outcomes)
    m, data = _only_object(str(efs_root))
    assert m.version == 1 and data == body


def test_repeated_predict_writes_output_once(http, efs_root):
    status, ing = http.post("/ingest", {"data": "model bytes", "filename": "idem.pt"})
    assert status == 200
    answers, stats = [], []
    out = os.path.join(str(efs_root), "outputs", f"{ing['fileId']}.result")
    for _ in range(5):
        status, body = http.post("/predict", {"fileId": ing["fileId"], "model": "idem.pt"})
        assert status == 200, body
        answers.append(body["result"])
        st = os.stat(out)
        stats.append((st.st_ino, st.st_mtime_ns, st.st_size))
        with open(out, "rb") as f:
            doc = json.loads(f.read())
        assert doc["result"] == body["result"] and doc["fileId"] == ing["fileId"]
    assert all(a == answers[0] for a in answers)
    assert answers[0]["checksum"] == ing["sha256"]
    # Same inode and mtime: the repeats rewrote nothing (not even atomically).
    assert len(set(stats)) == 1, stats
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store

    m = Store(str(efs_root)).manifest(ObjectRef("outputs", f"{ing['fileId']}.result"))
    assert m.version == 1 and R.debris(str(efs_root)) == []
