"""Bounded listings: pages of at most ``limit`` entries, resumed by an opaque token.

A listing is one or more *sections* of keys, each sorted (by code point);
a page walks them in order from just after its cursor, loads each key's
entry and stops at whichever comes first:

* ``limit`` entries (``?limit=``, default and maximum :data:`MAX_LIMIT`);
* :data:`PAGE_BYTES` of serialised entries (worst-case entries, such as
  rejected keys echoing 1,024 escaped characters, cannot push a page near
  Lambda's 6 MB response limit, whatever ``limit`` says);
* the request's deadline less :data:`RESERVE_SECONDS` (a slow store gives
  a shorter page and a ``next`` token, not a gateway 504).

The cursor is the last key returned, so a page is resumed *after* it: a key
present from the first page to the last comes back exactly once, whatever is
added or deleted meanwhile; a key added behind the cursor shows up in a later
listing, not this one. The token names its listing, so a ``/models`` token is
refused by any other listing (``GET /jobs`` reuses this module as it is).

Tokens are opaque to clients: base64url of a small JSON document and a
checksum. A token that does not decode, fails its checksum, belongs to another
listing, or names a key no listing could hold is ``400 INVALID_REQUEST``.
The checksum is not a secret: a token built by hand that passes can only
resume the listing after some key, which any client may list anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from chalicelib import deadline
from chalicelib.errors import InvalidRequest
from chalicelib.validation import reject_unknown

#: Entries per page, and the default when ``limit`` is not given. 1,000 ready
#: entries are ~0.6 MB of JSON and ~2,000 EFS read ops (~2 s at ~1 ms each):
#: far under 6 MB and 29 s, and every store of up to 1,000 names still lists
#: whole for a client that never sends ``limit`` (S3's ``max-keys`` is 1,000 too).
MAX_LIMIT = 1000
DEFAULT_LIMIT = MAX_LIMIT
#: Serialised entries per page at most: 1 MiB, a sixth of Lambda's 6 MB.
PAGE_BYTES = 1024 * 1024
#: A page ends once less than this is left before the request's deadline.
RESERVE_SECONDS = 2.0
#: Query parameters a listing takes.
PARAMS = ("limit", "next")
_CHECK_BYTES = 8
_DIGITS = re.compile(r"[0-9]{1,7}\Z")
_MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Cursor:
    """Where a page resumes: after key ``after`` of section ``section``."""

    section: int
    after: str


@dataclass(frozen=True)
class PageRequest:
    """A listing request: ``limit`` entries from just after ``cursor`` (``None``: the start)."""

    limit: int
    cursor: Cursor | None


@dataclass(frozen=True)
class Page:
    """One page: its entries and the token of the next one (``None``: the last page)."""

    items: list[dict[str, Any]]
    next: str | None


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, person=b"efs-ml-page").digest()


def encode(listing: str, cursor: Cursor) -> str:
    """The opaque token resuming ``listing`` after ``cursor``."""
    payload = json.dumps([1, listing, cursor.section, cursor.after], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode("ascii")


def decode(listing: str, token: str, valid_key: Callable[[int, str], bool]) -> Cursor:
    """The cursor in ``token``, or :class:`InvalidRequest` if ``listing`` never issued it."""
    bad = InvalidRequest("'next' is not a token this listing issued; start again without it")
    if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
    if len(raw) <= _CHECK_BYTES or check != _check(payload):
        raise bad
    try:
        version, name, section, after = json.loads(payload)
    except (ValueError, TypeError):
        raise bad from None
    if version != 1 or name != listing or type(section) is not int or not isinstance(after, str):
        raise bad
    if not valid_key(section, after):
        raise bad
    return Cursor(section, after)


def parse(
    params: Mapping[str, Any] | None,
    listing: str,
    valid_key: Callable[[int, str], bool],
    *,
    default_limit: int = DEFAULT_LIMIT,
    max_limit: int = MAX_LIMIT,
) -> PageRequest:
    """A listing's query parameters (``limit``, ``next``) as a :class:`PageRequest`.

    ``params`` is Chalice's ``query_params`` (a MultiDict, or ``None``).
    Unknown or repeated parameters, a ``limit`` that is not an integer in
    1..``max_limit``, and a bad token are :class:`InvalidRequest`.
    """
    params = params or {}
    reject_unknown(params, PARAMS, "query parameter", "; a listing takes 'limit' and 'next'")
    values = {}
    for name in PARAMS:
        if name in params:
            got = params.getlist(name) if hasattr(params, "getlist") else [params[name]]
            if len(got) != 1:
                raise InvalidRequest(f"Query parameter '{name}' given more than once")
            values[name] = got[0]
    limit = default_limit
    if "limit" in values:
        text = values["limit"]
        if not isinstance(text, str) or not _DIGITS.match(text) or not 1 <= int(text) <= max_limit:
            raise InvalidRequest(f"'limit' must be an integer from 1 to {max_limit}")
        limit = int(text)
    cursor = decode(listing, values["next"], valid_key) if "next" in values else None
    return PageRequest(limit, cursor)


def _entry_bytes(entry: dict[str, Any]) -> int:
    # As Chalice serialises the body (compact separators, ASCII escapes), plus a comma.
    return len(json.dumps(entry, separators=(",", ":"))) + 1


def paginate(
    listing: str,
    sections: Sequence[Iterable[str]],
    load: Callable[[int, str], dict[str, Any] | None],
    request: PageRequest,
    *,
    max_bytes: int = PAGE_BYTES,
    descending: bool = False,
) -> Page:
    """The page ``request`` asks for.

    ``sections`` are sorted key sequences (newest first with ``descending``),
    walked in order; ``load(section,
    key)`` is a key's entry, or ``None`` to skip it (gone since the keys were
    listed). A page holds at least one entry unless nothing is left (or the
    deadline has passed: :class:`~chalicelib.errors.DeadlineExceeded`).
    """
    items: list[dict[str, Any]] = []
    size = 0
    last: Cursor | None = request.cursor
    for index, keys in enumerate(sections):
        if request.cursor is not None and index < request.cursor.section:
            continue
        after = request.cursor.after if request.cursor is not None and index == request.cursor.section else None
        for key in keys:
            if after is not None and (key >= after if descending else key <= after):
                continue
            if items and (
                len(items) >= request.limit or deadline.remaining(float("inf")) < RESERVE_SECONDS or size >= max_bytes
            ):
                return Page(items, encode(listing, last) if last is not None else None)
            deadline.check("listing")
            entry = load(index, key)
            if entry is None:
                continue
            cost = _entry_bytes(entry)
            if items and size + cost > max_bytes:
                return Page(items, encode(listing, last) if last is not None else None)
            items.append(entry)
            size += cost
            last = Cursor(index, key)
    return Page(items, None)
