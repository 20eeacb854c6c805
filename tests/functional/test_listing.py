"""GET /models pages (issue 16, finding 6): bounded by ``limit`` and bytes,
resumed after an opaque ``next`` token, every name exactly once."""

from __future__ import annotations

import base64
import json

import pytest

from chalicelib import paging
from chalicelib.names import ObjectRef
from tests.support.listing import seed
from tests.support.routes import error, ok, post

# Far under Lambda's 6 MB response (the old listing of 20,000 names was 7.86 MB).
PAGE_BOUND = paging.PAGE_BYTES + 4096


def get(client, query=""):
    response = client.http.get("/models" + query)
    assert len(response.body) <= PAGE_BOUND, f"a page of {len(response.body)} bytes"
    return response


def walk(client, limit, between=None):
    """Every page of GET /models; ``between(page_number)`` runs before each next page."""
    names, pages, token = [], 0, None
    while True:
        query = f"?limit={limit}" + (f"&next={token}" if token else "")
        body = ok(get(client, query))
        assert body["count"] == len(body["models"]) <= limit
        names += [m["name"] for m in body["models"]]
        pages += 1
        token = body.get("next")
        if token is None:
            return names, pages
        if between is not None:
            between(pages)


def test_20000_names_come_back_once_in_bounded_pages_while_names_come_and_go(client, efs_root):
    from chalicelib.edge import get_store

    everyone = seed(str(efs_root), (f"model-{i:05d}.bin" for i in range(20_000)))
    store = get_store()
    added, deleted = [], []

    def churn(page):
        # Behind the cursor and ahead of it: deletions of names not yet listed, new names both sides.
        for name in (f"model-{(page * 997 + 13) % 20_000:05d}.bin", f"model-{19_999 - page:05d}.bin"):
            if name not in deleted and store.delete(ObjectRef("models", name)) is not None:
                deleted.append(name)
        for name in (f"model-{page:05d}.bin-late", f"zzz-{page}.bin", f"aaa-{page}.bin"):
            store.put_bytes(ObjectRef("models", name), b"late", source="inline")
            added.append(name)

    names, pages = walk(client, paging.MAX_LIMIT, churn)
    assert len(names) == len(set(names)), "a name came back twice"
    stayed = set(everyone) - set(deleted)
    assert stayed <= set(names), "a name present throughout was missed"
    assert names == sorted(names)
    # Added ahead of the cursor: listed; behind it (aaa-*): next time, never twice.
    assert {n for n in added if n.startswith("zzz-")} <= set(names)
    assert pages >= 20 and deleted and added


def test_no_limit_is_the_first_page_in_the_old_shape(client, efs_root):
    seed(str(efs_root), (f"m{i:04d}" for i in range(paging.DEFAULT_LIMIT + 5)))
    body = ok(get(client))
    assert set(body) == {"models", "count", "next"} and body["count"] == paging.DEFAULT_LIMIT
    rest = ok(get(client, f"?next={body['next']}"))
    assert [m["name"] for m in rest["models"]] == [
        f"m{i:04d}" for i in range(paging.DEFAULT_LIMIT, paging.DEFAULT_LIMIT + 5)
    ]
    assert "next" not in rest  # the last page says so by having no token
    ok(post(client, "/ingest", {"data": "x", "filename": "inputs/only.json"}))
    assert ok(get(client, "?limit=1000"))["count"] == paging.DEFAULT_LIMIT  # inputs are not models


def test_a_page_ends_at_its_byte_bound_whatever_the_limit(client, efs_root):
    from chalicelib.edge import get_store
    from chalicelib.errors import InvalidRequest

    store = get_store()
    # Rejected keys are the largest entries: a 1,024-character key echoed, escaped, and its error.
    for i in range(400):
        key = f"models/{i:03d}" + "\u00e9\u0000" * 508
        store.status.rejected(key, InvalidRequest("x" * 1024))
    names, pages = walk(client, paging.MAX_LIMIT)
    assert names == [None] * 400 and pages >= 2


@pytest.mark.parametrize("query", ["?limit=0", "?limit=1001", "?limit=-1", "?limit=ten", "?limit=", "?limit=1e3"])
def test_a_bad_limit_is_400(client, query):
    assert "limit" in error(client.http.get("/models" + query), 400, "INVALID_REQUEST")["message"]


def _token(payload: list) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw + b"\0" * 8).rstrip(b"=").decode()


def test_a_garbled_forged_or_foreign_token_is_400(client, efs_root):
    seed(str(efs_root), ("a.bin", "b.bin", "c.bin"))
    token = ok(get(client, "?limit=1"))["next"]
    assert [m["name"] for m in ok(get(client, f"?limit=1&next={token}"))["models"]] == ["b.bin"]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    inputs = paging.encode("inputs", paging.Cursor(0, "a.bin"))
    unsafe = paging.encode("models", paging.Cursor(0, "../../etc"))
    for bad in (flipped, token[:-1], "x", "%00", "~~~~", _token([1, "models", 0, "a.bin"]), inputs, unsafe, "é"):
        error(client.http.get(f"/models?next={bad}"), 400, "INVALID_REQUEST")
    error(client.http.get(f"/models?next={token}&next={token}"), 400, "INVALID_REQUEST")
    error(client.http.get("/models?next="), 400, "INVALID_REQUEST")


def test_unknown_query_parameters_are_400(client):
    assert "page" in error(client.http.get("/models?page=2"), 400, "INVALID_REQUEST")["message"]
