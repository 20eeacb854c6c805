"""The S3 archive of a result runs beside the store write, not after it (issue 10)."""

from __future__ import annotations

import time

import pytest

from chalicelib.names import ObjectRef

REF = ObjectRef("outputs", "f1.result")
DOC = b'{"result": 1}'


def test_archive_runs_while_the_store_writes(bucket, efs_root, s3_client):
    """A store write that waits until the archived object exists: if the
    archive ran after it, the object would never appear."""
    from botocore.exceptions import ClientError

    from chalicelib import predict
    from chalicelib.edge import get_settings
    from chalicelib.store import Store

    seen = []

    class WaitsForArchive(Store):
        def put_bytes(self, ref, data, **kw):
            until = time.monotonic() + 10
            while time.monotonic() < until and not seen:
                try:
                    s3_client.head_object(Bucket=bucket, Key=ref.key)
                    seen.append(ref.key)
                except ClientError:
                    time.sleep(0.01)
            return super().put_bytes(ref, data, **kw)

    key = predict.store_and_archive(WaitsForArchive(str(efs_root)), get_settings(), REF, DOC, source="t")
    assert seen == [REF.key] and key == REF.key
    assert s3_client.get_object(Bucket=bucket, Key=REF.key)["Body"].read() == DOC
    assert Store(str(efs_root)).read_bytes(REF)[1] == DOC


def test_archive_sees_the_deadline_and_its_error_reaches_the_caller(bucket, efs_root, monkeypatch):
    from chalicelib import deadline, predict, s3
    from chalicelib.edge import get_settings
    from chalicelib.errors import S3Unavailable
    from chalicelib.store import Store

    saw = []

    def failing_put(settings_, bucket_, key, data):
        saw.append(deadline.has_deadline())
        raise S3Unavailable()

    monkeypatch.setattr(s3, "put_bytes", failing_put)
    store = Store(str(efs_root))
    with deadline.bounded(20), pytest.raises(S3Unavailable):
        predict.store_and_archive(store, get_settings(), REF, DOC, source="t")
    assert saw == [True], "the archive thread must run under the request's deadline"
    assert store.read_bytes(REF)[1] == DOC  # the store write finished all the same


def test_store_error_wins_and_the_archive_is_waited_for(bucket, efs_root, monkeypatch):
    from chalicelib import predict, s3
    from chalicelib.edge import get_settings
    from chalicelib.errors import EfsWriteFailed
    from chalicelib.store import Store

    finished = []

    def slow_put(settings_, bucket_, key, data):
        time.sleep(0.2)
        finished.append(key)

    class Broken(Store):
        def put_bytes(self, ref, data, **kw):
            raise EfsWriteFailed("write", "Failed to write file to EFS (No space left on device)")

    monkeypatch.setattr(s3, "put_bytes", slow_put)
    with pytest.raises(EfsWriteFailed):
        predict.store_and_archive(Broken(str(efs_root)), get_settings(), REF, DOC, source="t")
    assert finished == [REF.key], "no archive may outlive its request"
