"""A same-size mismatch heals on re-ingest, inline or from S3 (issue 9 #10).

Before, re-ingesting the right content answered ``exists`` because only the
size was compared, and predict kept failing on the damaged bytes.
"""

from __future__ import annotations

import time

from tests.support.routes import error, ok, post


def _damage(efs_root, name, data):
    # File times move by the kernel's tick: damage in the tick of the commit
    # itself would keep the mtime (real damage comes long after).
    time.sleep(0.05)
    with open(efs_root / "models" / name, "r+b") as f:
        f.write(data)


def test_inline_reingest_heals(client, efs_root):
    first = ok(post(client, "/ingest", {"filename": "m.bin", "data": "model bytes"}))
    _damage(efs_root, "m.bin", b"MODEL BYTES")
    error(post(client, "/predict", {"fileId": "f1", "model": "m.bin"}), 500, "PROCESSING_FAILED")
    healed = ok(post(client, "/ingest", {"filename": "m.bin", "data": "model bytes"}))
    assert (healed["status"], healed["version"], healed["fileId"]) == ("updated", 2, first["fileId"])
    assert ok(post(client, "/predict", {"fileId": "f1", "model": "m.bin"}))["result"]["processed"] is True
    assert ok(post(client, "/ingest", {"filename": "m.bin", "data": "model bytes"}))["status"] == "exists"


def test_s3_reingest_heals(client, bucket, s3_client, efs_root):
    s3_client.put_object(Bucket=bucket, Key="models/s.bin", Body=b"from s3")
    assert ok(post(client, "/ingest", {"key": "models/s.bin"}))["status"] == "created"
    _damage(efs_root, "s.bin", b"FROM S3")
    healed = ok(post(client, "/ingest", {"key": "models/s.bin"}))
    assert (healed["status"], healed["version"]) == ("updated", 2)
    assert (efs_root / "models" / "s.bin").read_bytes() == b"from s3"
    assert ok(post(client, "/ingest", {"key": "models/s.bin"}))["status"] == "exists"
