"""Events never undo a newer write, and leave no ghosts (issue 16, findings 2-4).

Driven through the S3 handler (``app.on_object_created``) with the event
dicts S3 sends, against the moto server and a real store folder; events are
delivered late, duplicated and out of order.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import pytest

from tests.support.routes import error, ok, post
from tests.support.s3_events import s3_event


def deliver(client, *events: dict) -> list[str]:
    """Hand each event to the S3 handler in turn; the outcome statuses."""
    statuses = []
    for e in events:
        statuses += [o["status"] for o in client.lambda_.invoke("on_object_created", e).payload]
    return statuses


def created(bucket, key, **obj):
    return s3_event(bucket, key, "ObjectCreated:Put", **obj)


def removed(bucket, key, name="ObjectRemoved:Delete", **obj):
    return s3_event(bucket, key, name, **obj)


def listing(client) -> list[tuple]:
    return [(m["name"], m["state"]) for m in ok(client.http.get("/models"))["models"]]


# -- finding 2: a stale ObjectRemoved never deletes a newer copy -----------------------


def test_delete_then_inline_reingest_survives_the_deletes_own_late_event(client, bucket, s3_client):
    """The reported data loss: DELETE a model ingested by key, re-ingest the
    name inline; the DELETE's ObjectRemoved arrives later (twice)."""
    s3_client.put_object(Bucket=bucket, Key="models/m.bin", Body=b"from s3")
    ok(post(client, "/ingest", {"key": "models/m.bin"}))
    ok(client.http.delete("/models/m.bin"))
    fresh = ok(post(client, "/ingest", {"data": "inline weights", "filename": "m.bin"}))
    assert deliver(client, removed(bucket, "models/m.bin"), removed(bucket, "models/m.bin")) == ["kept", "kept"]
    state = ok(client.http.get("/models/m.bin"))
    assert state["state"] == "ready" and state["source"] == "inline" and state["fileId"] == fresh["fileId"]
    assert state["sha256"] == hashlib.sha256(b"inline weights").hexdigest()
    # The created event of the original upload, later still: S3 has nothing, the inline copy stays.
    assert deliver(client, created(bucket, "models/m.bin")) == ["skipped"]
    assert ok(client.http.get("/models/m.bin"))["fileId"] == fresh["fileId"]


def test_removed_event_of_another_spelling_keeps_the_copy(client, bucket, s3_client):
    """A copy from the NFD key is not the NFC key's: removing the NFC object
    keeps it, removing the NFD one deletes it."""
    nfd, nfc = "models/re\u0301sume\u0301.bin", "models/r\u00e9sum\u00e9.bin"
    s3_client.put_object(Bucket=bucket, Key=nfc, Body=b"nfc bytes")
    s3_client.put_object(Bucket=bucket, Key=nfd, Body=b"nfd bytes")
    ok(post(client, "/ingest", {"key": nfc}))
    ok(post(client, "/ingest", {"key": nfd}))  # the later ingest: the copy is NFD's
    s3_client.delete_object(Bucket=bucket, Key=nfc)
    assert deliver(client, removed(bucket, nfc)) == ["kept"]
    assert ok(client.http.get("/models/" + quote("r\u00e9sum\u00e9.bin")))["sizeBytes"] == len(b"nfd bytes")
    s3_client.delete_object(Bucket=bucket, Key=nfd)
    assert deliver(client, removed(bucket, nfd), removed(bucket, nfd)) == ["deleted", "absent"]
    assert listing(client) == []


def test_out_of_order_events_of_one_key_follow_what_s3_holds(client, bucket, s3_client):
    """put v1, delete, put v2: every order and repeat of the three events ends with v2."""
    s3_client.put_object(Bucket=bucket, Key="models/k.bin", Body=b"v1")
    ok(post(client, "/ingest", {"key": "models/k.bin"}))
    s3_client.delete_object(Bucket=bucket, Key="models/k.bin")
    s3_client.put_object(Bucket=bucket, Key="models/k.bin", Body=b"version 2")
    c1, r1, c2 = created(bucket, "models/k.bin"), removed(bucket, "models/k.bin"), created(bucket, "models/k.bin")
    assert deliver(client, c2, r1, c1, r1, c2) == ["updated", "kept", "exists", "kept", "exists"]
    assert ok(client.http.get("/models/k.bin"))["sizeBytes"] == len(b"version 2")


@pytest.fixture
def versioned(bucket, s3_client):
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def test_versioned_bucket_delete_markers_and_version_deletes(client, versioned, s3_client):
    key = "models/v.bin"
    v1 = s3_client.put_object(Bucket=versioned, Key=key, Body=b"one")["VersionId"]
    ok(post(client, "/ingest", {"key": key}))
    marker = s3_client.delete_object(Bucket=versioned, Key=key)["VersionId"]
    # A delete marker hides every version: the copy goes (once, however often the event comes).
    mark = removed(versioned, key, "ObjectRemoved:DeleteMarkerCreated", versionId=marker)
    assert deliver(client, mark, mark) == ["deleted", "absent"]
    v2 = s3_client.put_object(Bucket=versioned, Key=key, Body=b"two!")["VersionId"]
    assert deliver(client, created(versioned, key, versionId=v2)) == ["created"]
    # The old marker's event again, and the permanent delete of v1 and of the marker:
    # the key still holds v2, so the copy stays.
    for version in (v1, marker):
        s3_client.delete_object(Bucket=versioned, Key=key, VersionId=version)
    late = [mark, removed(versioned, key, versionId=v1), removed(versioned, key, versionId=marker)]
    assert deliver(client, *late) == ["kept", "kept", "kept"]
    assert ok(client.http.get("/models/v.bin"))["sizeBytes"] == 4
    # A re-ingest inline, then v2 deleted for good: the inline copy is no S3 version's.
    ok(post(client, "/ingest", {"data": "inline", "filename": "v.bin"}))
    s3_client.delete_object(Bucket=versioned, Key=key, VersionId=v2)
    assert deliver(client, removed(versioned, key, versionId=v2)) == ["kept"]
    assert ok(client.http.get("/models/v.bin"))["source"] == "inline"


# -- finding 3: a late ObjectCreated leaves no ghost, and a ghost can be deleted ------


def test_late_created_event_after_delete_leaves_no_record(client, bucket, s3_client):
    s3_client.put_object(Bucket=bucket, Key="models/g.bin", Body=b"ghost?")
    ok(post(client, "/ingest", {"key": "models/g.bin"}))
    ok(client.http.delete("/models/g.bin"))
    late = created(bucket, "models/g.bin")
    assert deliver(client, late, removed(bucket, "models/g.bin"), late) == ["skipped", "absent", "skipped"]
    error(client.http.get("/models/g.bin"), 404, "NOT_FOUND")
    assert listing(client) == []
    error(client.http.delete("/models/g.bin"), 404, "NOT_FOUND")


def test_pending_hand_off_of_a_deleted_object_leaves_nothing(client, bucket, s3_client, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("SYNC_INGEST_MAX_BYTES", "16")
    edge.reset()
    for first in ("removed", "created"):  # either event may come first
        key = f"models/p-{first}.bin"
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"P" * 64)
        assert post(client, "/ingest", {"key": key}).status_code == 202
        s3_client.delete_object(Bucket=bucket, Key=key)  # before the hand-off's event landed
        pair = [removed(bucket, key), created(bucket, key)]
        expected = ["cleared", "skipped"]
        if first == "created":
            pair.reverse()
            expected = ["skipped", "absent"]
        assert deliver(client, *pair) == expected
        error(client.http.get("/models/" + key.split("/")[1]), 404, "NOT_FOUND")
    assert listing(client) == []


def test_removal_clears_the_failure_record_of_its_key(client, bucket, s3_client, monkeypatch):
    from chalicelib import edge

    monkeypatch.setenv("MAX_INGEST_BYTES", "8")
    edge.reset()
    s3_client.put_object(Bucket=bucket, Key="models/big.bin", Body=b"B" * 9)
    assert deliver(client, created(bucket, "models/big.bin")) == ["skipped"]
    assert listing(client) == [("big.bin", "failed")]
    assert deliver(client, removed(bucket, "models/big.bin")) == ["kept"]  # the object is still there
    s3_client.delete_object(Bucket=bucket, Key="models/big.bin")
    assert deliver(client, removed(bucket, "models/big.bin"), removed(bucket, "models/big.bin")) == [
        "cleared",
        "absent",
    ]
    assert listing(client) == []


def test_a_ghost_record_can_always_be_deleted(client, bucket, s3_client, efs_root, monkeypatch):
    """A name with a failed record and no copy (what the late event left
    before this fix, or a too-large object): DELETE removes it, and its S3 object."""
    from chalicelib import edge
    from chalicelib.errors import S3NotFound
    from chalicelib.names import ObjectRef
    from chalicelib.store import Store, status

    store = Store(str(efs_root))
    store.status.failed(ObjectRef("models", "old.bin"), "models/old.bin", S3NotFound("models/old.bin"), status.stamp())
    monkeypatch.setenv("MAX_INGEST_BYTES", "8")
    edge.reset()
    s3_client.put_object(Bucket=bucket, Key="models/big.bin", Body=b"B" * 9)
    deliver(client, created(bucket, "models/big.bin"))
    assert listing(client) == [("big.bin", "failed"), ("old.bin", "failed")]
    for name in ("old.bin", "big.bin"):
        body = ok(client.http.delete(f"/models/{name}"))
        assert body == {
            "status": "deleted",
            "key": f"models/{name}",
            "name": name,
            "fileId": None,
            "version": None,
            "s3Deleted": True,
        }
        error(client.http.get(f"/models/{name}"), 404, "NOT_FOUND")
    assert listing(client) == []
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix="models/").get("KeyCount", 0) == 0
    # Its removal event, late: nothing to do.
    assert deliver(client, removed(bucket, "models/big.bin")) == ["absent"]


# -- finding 4: records of rejected keys are cleared by their removal -----------------


def test_rejected_key_record_is_cleared_by_its_removal(client, bucket, s3_client):
    bad = "models/" + "n" * 300 + ".onnx"
    for key in (bad, "models/.hidden"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert deliver(client, created(bucket, key), created(bucket, key)) == ["skipped", "skipped"]
    assert sorted(m["key"] for m in ok(client.http.get("/models"))["models"]) == sorted([bad, "models/.hidden"])
    # A removal while the object is still there (a stale one) keeps the record.
    assert deliver(client, removed(bucket, bad)) == ["kept"]
    s3_client.delete_object(Bucket=bucket, Key=bad)
    assert deliver(client, removed(bucket, bad), removed(bucket, bad)) == ["cleared", "skipped"]
    assert [m["key"] for m in ok(client.http.get("/models"))["models"]] == ["models/.hidden"]
    s3_client.delete_object(Bucket=bucket, Key="models/.hidden")
    assert deliver(client, removed(bucket, "models/.hidden")) == ["cleared"]
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}


def test_late_created_event_of_a_deleted_rejected_key_leaves_no_record(client, bucket, s3_client):
    key = "models/../escape"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3_client.delete_object(Bucket=bucket, Key=key)
    assert deliver(client, removed(bucket, key), created(bucket, key)) == ["skipped", "skipped"]
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}


def test_rejected_key_is_recorded_when_s3_cannot_say_whether_it_exists(client, bucket, s3_client, s3_proxy):
    """Not knowing is no reason to lose the record: only a key S3 says is gone goes unrecorded."""
    from tests.support.faultproxy import Fault

    key = "models/.dotted"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3_proxy.rule = lambda method, path, n: Fault(status=503, code="SlowDown") if method == "HEAD" else None
    assert deliver(client, created(bucket, key)) == ["skipped"]
    assert [m["key"] for m in ok(client.http.get("/models"))["models"]] == [key]
    # Its removal while S3 keeps failing: a retry (Lambda's), the record stays.
    s3_client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(Exception, match="Lambda will retry"):
        deliver(client, removed(bucket, key))
    assert ok(client.http.get("/models"))["count"] == 1
    s3_proxy.rule = lambda method, path, n: None
    assert deliver(client, removed(bucket, key)) == ["cleared"]
    assert ok(client.http.get("/models"))["count"] == 0
