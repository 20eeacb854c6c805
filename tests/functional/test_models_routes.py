"""GET /models and GET /models/{name}: the catalogue of landed models."""

import hashlib

from tests.support.routes import error, ok, post

FIELDS = {
    "name",
    "key",
    "fileId",
    "sizeBytes",
    "sha256",
    "version",
    "source",
    "created",
    "updated",
    "format",
    "signature",
}


def test_empty_store_lists_nothing(client):
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}


def test_lists_models_only_sorted_with_their_manifest(client):
    for name, data in (("b.pt", "bbb"), ("a.pt", "a"), ("inputs/x.json", "{}")):
        ok(post(client, "/ingest", {"data": data, "filename": name}))
    body = ok(client.http.get("/models"))
    assert body["count"] == 2 and [m["name"] for m in body["models"]] == ["a.pt", "b.pt"]
    a = body["models"][0]
    assert set(a) == FIELDS | {"state", "readyVersion"} and a["state"] == "ready" and a["readyVersion"] == 1
    assert a["key"] == "models/a.pt" and a["sizeBytes"] == 1 and a["sha256"] == hashlib.sha256(b"a").hexdigest()
    assert a["version"] == 1 and a["source"] == "inline" and a["created"] == a["updated"]


def test_one_model_follows_its_versions(client):
    first = ok(post(client, "/ingest", {"data": "v1", "filename": "m.pt"}))
    assert ok(client.http.get("/models/m.pt"))["version"] == 1
    ok(post(client, "/ingest", {"data": "version two", "filename": "m.pt"}))
    model = ok(client.http.get("/models/m.pt"))
    assert model["version"] == 2 and model["fileId"] == first["fileId"]
    assert model["sizeBytes"] == len("version two") and model["sha256"] == hashlib.sha256(b"version two").hexdigest()


def test_absent_model_is_the_documented_404(client):
    body = error(client.http.get("/models/ghost.pt"), 404, "NOT_FOUND")
    assert "ghost.pt" in body["message"]


def test_invalid_name_is_400(client):
    for name in ("..", ".hidden", "a%00b", "x" * 300):
        error(client.http.get(f"/models/{name}"), 400, "INVALID_REQUEST")


def test_an_input_is_not_a_model(client):
    ok(post(client, "/ingest", {"data": "{}", "filename": "inputs/x.json"}))
    error(client.http.get("/models/x.json"), 404, "NOT_FOUND")


def test_names_people_use_round_trip(client):
    """Spaces, accents, brackets and '+' in names, through ingest and the
    percent-encoded path parameter (decoded exactly once)."""
    import unicodedata
    from urllib.parse import quote

    for name in ("my model.pt", "modèle.pt", "résumé (final).bin", "a+b.bin", "모델.pt"):
        created = ok(post(client, "/ingest", {"data": name, "filename": name}))
        assert created["status"] == "created" and created["efsPath"].endswith("/" + name)
        got = ok(client.http.get("/models/" + quote(name, safe="")))
        assert (got["name"], got["fileId"]) == (name, created["fileId"])
    assert ok(client.http.get("/models/a%2Bb.bin"))["name"] == "a+b.bin"
    assert ok(client.http.get("/models/my%20model.pt"))["name"] == "my model.pt"
    # '+' in a path is a plus, not a space; a double-encoded name is not decoded twice.
    error(client.http.get("/models/my+model.pt"), 404, "NOT_FOUND")
    error(client.http.get("/models/a%252Bb.bin"), 400, "INVALID_REQUEST")
    # NFD and NFC spell one name: the same object, not a second one.
    nfd = unicodedata.normalize("NFD", "modèle.pt")
    again = ok(post(client, "/ingest", {"data": "modèle.pt", "filename": nfd}))
    assert again["status"] == "exists"
    assert ok(client.http.get("/models/" + quote(nfd, safe="")))["name"] == "modèle.pt"
    listed = ok(client.http.get("/models"))
    assert sorted(m["name"] for m in listed["models"]) == sorted(
        ["my model.pt", "modèle.pt", "résumé (final).bin", "a+b.bin", "모델.pt"]
    )
