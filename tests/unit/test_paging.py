"""The pager behind GET /models (and GET /jobs later): sections, cursors, bounds, deadline."""

from __future__ import annotations

import time

import pytest

from chalicelib import deadline, paging
from chalicelib.errors import DeadlineExceeded, InvalidRequest


def any_key(section: int, key: str) -> bool:
    return True


def pages(sections, limit, load=None, **kw):
    load = load or (lambda section, key: {"s": section, "k": key})
    request, out = paging.PageRequest(limit, None), []
    while True:
        page = paging.paginate("things", sections, load, request, **kw)
        out.append(page.items)
        if page.next is None:
            return out
        request = paging.PageRequest(limit, paging.decode("things", page.next, any_key))


def test_sections_in_order_each_key_once():
    got = pages((["a", "b", "c"], ["x", "y"]), 2)
    assert [[e["k"] for e in p] for p in got] == [["a", "b"], ["c", "x"], ["y"]]


def test_skipped_keys_do_not_end_a_page():
    got = pages((["a", "gone", "b", "c"],), 2, load=lambda s, k: None if k == "gone" else {"k": k})
    assert [[e["k"] for e in p] for p in got] == [["a", "b"], ["c"]]


def test_byte_bound_shortens_a_page_but_never_empties_it():
    big = {"k": "x" * 600}
    got = pages((["a", "b", "c"],), 1000, load=lambda s, k: big, max_bytes=1000)
    assert [len(p) for p in got] == [1, 1, 1]


def test_a_page_ends_before_the_deadline_with_a_token():
    def slow(section, key):
        time.sleep(0.05)
        return {"k": key}

    with deadline.bounded(paging.RESERVE_SECONDS + 0.12):
        page = paging.paginate("things", ([str(i) for i in range(100)],), slow, paging.PageRequest(100, None))
    assert 1 <= len(page.items) < 100 and page.next is not None


def test_no_time_at_all_is_a_timeout_not_an_empty_page():
    with deadline.bounded(0), pytest.raises(DeadlineExceeded):
        paging.paginate("things", (["a"],), lambda s, k: {"k": k}, paging.PageRequest(1, None))


def test_a_token_names_its_listing_and_passes_the_key_check():
    token = paging.encode("things", paging.Cursor(1, "k"))
    assert paging.decode("things", token, any_key) == paging.Cursor(1, "k")
    for listing, check in (("jobs", any_key), ("things", lambda s, k: False)):
        with pytest.raises(InvalidRequest):
            paging.decode(listing, token, check)
