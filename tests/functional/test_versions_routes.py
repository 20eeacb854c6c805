"""Model versions through the routes (issue 18, finding 5): docs/versions.md.

``"version": n`` in /predict, ``GET /models/{name}?version=n``,
``GET /models/{name}/versions``, ``POST /models/{name}/rollback``.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support.routes import error, ok, post


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ingest(client, *payloads, name="m.bin"):
    return [ok(post(client, "/ingest", {"filename": name, "data": p})) for p in payloads]


def predict(client, version=None, file_id="f", **extra):
    body = {"fileId": file_id, "model": "m.bin", **extra}
    if version is not None:
        body["version"] = version
    return post(client, "/predict", body)


def test_predict_pins_a_kept_version_and_the_cache_serves_both_warm(client):
    ingest(client, "one", "two", "three")
    for v, data in ((1, "one"), (2, "two"), (3, "three")):
        model = ok(predict(client, v, file_id=f"p{v}"))["model"]
        assert (model["version"], model["sha256"]) == (v, sha(data))
    assert ok(predict(client, file_id="cur"))["model"]["version"] == 3
    # A pinned version and the current one, alternately: both stay loaded.
    caches = [ok(predict(client, v, file_id=f"w{i}-{v}"))["cache"] for i in range(2) for v in (1, None)]
    assert caches == ["hit"] * 4


def test_a_version_no_longer_kept_is_404_naming_what_is_kept(client):
    ingest(client, "1", "2", "3", "4")
    body = error(predict(client, 1), 404, "NOT_FOUND")
    assert "Version 1" in body["message"] and "2, 3, 4" in body["message"]
    body = error(client.http.get("/models/m.bin?version=9"), 404, "NOT_FOUND")
    assert "2, 3, 4" in body["message"]
    error(post(client, "/models/m.bin/rollback", {"version": 1}), 404, "NOT_FOUND")


@pytest.mark.parametrize("bad", [0, -1, "1", 1.5, True, None, [1]])
def test_a_version_that_is_not_a_positive_integer_is_400(client, bad):
    ingest(client, "1")
    body = {"fileId": "f", "model": "m.bin", "version": bad}
    assert "version" in error(post(client, "/predict", body), 400, "INVALID_REQUEST")["message"]
    error(post(client, "/models/m.bin/rollback", {"version": bad}), 400, "INVALID_REQUEST")


@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.0", "١"])
def test_a_bad_version_query_is_400(client, bad):
    ingest(client, "1")
    error(client.http.get(f"/models/m.bin?version={bad}"), 400, "INVALID_REQUEST")


def test_get_model_with_version_answers_that_version(client):
    first, _ = ingest(client, "one", "second")
    body = ok(client.http.get("/models/m.bin?version=1"))
    assert (body["version"], body["sha256"], body["sizeBytes"]) == (1, sha("one"), 3)
    assert body["current"] is False and body["readyVersion"] == 2 and body["fileId"] == first["fileId"]
    assert ok(client.http.get("/models/m.bin?version=2"))["current"] is True
    assert ok(client.http.get("/models/m.bin"))["version"] == 2


def test_versions_lists_the_kept_ones_newest_first(client):
    ingest(client, "1", "22", "333", "4444")
    body = ok(client.http.get("/models/m.bin/versions"))
    assert (body["name"], body["currentVersion"], body["latestVersion"], body["count"]) == ("m.bin", 4, 4, 3)
    assert [(v["version"], v["sizeBytes"], v["sha256"], v["current"]) for v in body["versions"]] == [
        (4, 4, sha("4444"), True),
        (3, 3, sha("333"), False),
        (2, 2, sha("22"), False),
    ]
    assert all(v["created"] and v["source"] == "inline" for v in body["versions"])
    error(client.http.get("/models/ghost.bin/versions"), 404, "NOT_FOUND")


def test_rollback_then_ingest_makes_a_new_number(client, efs_root):
    first, *_ = ingest(client, "one", "two", "three")
    body = ok(post(client, "/models/m.bin/rollback", {"version": 1}))
    assert (body["status"], body["version"], body["previousVersion"], body["latestVersion"]) == ("rolledBack", 1, 3, 3)
    assert body["sha256"] == sha("one") and body["fileId"] == first["fileId"]
    assert (efs_root / "models" / "m.bin").read_text() == "one"  # the efsPath is the current version
    assert ok(predict(client, file_id="after"))["model"]["version"] == 1
    assert ok(client.http.get("/models/m.bin"))["version"] == 1
    again = ok(post(client, "/models/m.bin/rollback", {"version": 1}))
    assert (again["status"], again["previousVersion"]) == ("current", None)
    (four,) = ingest(client, "four")
    assert (four["status"], four["version"]) == ("updated", 4)
    assert [v["version"] for v in ok(client.http.get("/models/m.bin/versions"))["versions"]] == [4, 3, 2]


def test_rollback_of_an_unknown_model_or_a_bad_body(client):
    error(post(client, "/models/ghost.bin/rollback", {"version": 1}), 404, "NOT_FOUND")
    ingest(client, "1")
    error(post(client, "/models/m.bin/rollback", {}), 400, "INVALID_REQUEST")
    error(post(client, "/models/m.bin/rollback", {"version": 1, "x": 1}), 400, "INVALID_REQUEST")
    error(post(client, "/models/m.bin/rollback", "not json"), 400, "INVALID_REQUEST")
    error(post(client, "/models/..%2Fx/rollback", {"version": 1}), 400, "INVALID_REQUEST")


def test_delete_removes_every_version(client, efs_root):
    ingest(client, "1", "2", "3")
    ok(client.http.delete("/models/m.bin"))
    assert list((efs_root / ".meta" / "versions" / "models").iterdir()) == []
    error(predict(client, 2), 404, "NOT_FOUND")
    error(client.http.get("/models/m.bin/versions"), 404, "NOT_FOUND")


def test_the_stored_result_names_the_pinned_version(client, efs_root):
    ingest(client, "one", "two")
    ok(predict(client, 1, file_id="pinned"))
    doc = json.loads((efs_root / "outputs" / "pinned.result").read_text())
    assert (doc["modelVersion"], doc["modelSha256"]) == (1, sha("one"))


@pytest.mark.parametrize(
    "route, failing", [("ingest", "keep"), ("rollback", "keep"), ("rollback", "stage")], ids=["ingest", "keep", "stage"]
)
def test_a_failed_link_is_a_documented_500_and_changes_nothing(client, efs_root, monkeypatch, route, failing):
    import errno
    import os

    from tests.support import reliability as R

    ingest(client, "one", "two")
    real_link = os.link

    def link(src, dst, *a, **kw):
        # keep: the old current's second name; stage: the version linked to the data temp.
        if (failing == "keep") == ("versions" in os.fspath(dst)):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_link(src, dst, *a, **kw)

    monkeypatch.setattr(os, "link", link)
    if route == "ingest":
        response = post(client, "/ingest", {"filename": "m.bin", "data": "three"})
    else:
        response = post(client, "/models/m.bin/rollback", {"version": 1})
    body = error(response, 500, "EFS_WRITE_FAILED")
    assert body["stage"] == "version" and str(efs_root) not in body["message"]
    monkeypatch.setattr(os, "link", real_link)
    assert R.debris(str(efs_root)) == []
    current = ok(client.http.get("/models/m.bin"))
    assert (current["version"], current["sha256"]) == (2, sha("two"))
    assert [v["version"] for v in ok(client.http.get("/models/m.bin/versions"))["versions"]] == [2, 1]
    assert ok(predict(client, 1, file_id="after"))["model"]["sha256"] == sha("one")
    # The retry succeeds.
    assert ok(post(client, "/models/m.bin/rollback", {"version": 1}))["status"] == "rolledBack"
