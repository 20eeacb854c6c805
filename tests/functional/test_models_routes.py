"""GET /models and GET /models/{name}: the catalogue of landed models."""
import hashlib

from tests.support.routes import error, ok, post

FIELDS = {"name", "key", "fileId", "sizeBytes", "sha256", "version", "source", "created", "updated"}


def test_empty_store_lists_nothing(client):
    assert ok(client.http.get("/models")) == {"models": [], "count": 0}


def test_lists_models_only_sorted_with_their_manifest(client):
    for name, data in (("b.pt", "bbb"), ("a.pt", "a"), ("inputs/x.json", "{}")):
        ok(post(client, "/ingest", {"data": data, "filename": name}))
    body = ok(client.http.get("/models"))
    assert body["count"] == 2 and [m["name"] for m in body["models"]] == ["a.pt", "b.pt"]
    a = body["models"][0]
    assert set(a) == FIELDS
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
