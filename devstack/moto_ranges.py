"""moto server whose ranged GET costs O(range), not O(object).

moto 5.2.5 answers ``GET`` with ``Range`` by reading the whole object
(``FakeKey.value``) and slicing it: one 8 MiB range of a 256 MiB object
took 155 ms here, so parallel ranged reads measured moto, not the service.
:func:`apply` makes a ranged GET read only its range from the key's buffer:
while moto handles one, ``FakeKey.value`` (on that thread only) is a view
whose ``len()`` is the object's size and whose slice reads just that slice,
which is all moto's ``_handle_range_header`` does with it. Everything else
(``IfMatch``, 304/412, 416 past the end, suffix ranges, headers) is moto's
own code, unchanged.

It also makes moto's SQS receive O(1) per message in its retention check:
moto 5.2.5 rebuilds every attribute of the queue (message counts included,
each a scan of the queue) for each message it hands out, only to read
``MessageRetentionPeriod``: about half of a ReceiveMessage's CPU with a
32-message queue, measured with cProfile, on the two cores the local job
workers share with moto. The check itself (sent + retention > now) is moto's.
And it lists moto's package directory once, not on every request (moto's
dispatcher does, to find the backend: ~0.5 ms of CPU per request).

Used by :class:`devstack.moto.MotoServer` (tests, bench, ``make local``)
and importable by other launchers (``infra/local/moto_shim.py``):
``python -m devstack.moto_ranges -H 127.0.0.1 -p PORT`` (from the project root) takes moto_server's
arguments.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from typing import Any

TESTED_MOTO = "5.2.5"
_local = threading.local()
_applied = False


class KeyView:
    """Stands in for an object's bytes: sized, sliceable, read lazily."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, item: slice) -> bytes:
        if not isinstance(item, slice) or item.step not in (None, 1):
            return self.read_all()[item]
        start, stop, _ = item.indices(len(self))
        if stop <= start:
            return b""
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            data: bytes = buffer.read(stop - start)
            return data

    def read_all(self) -> bytes:
        return self[0 : len(self)]


def apply() -> bool:
    """Patch moto's S3 in this process (idempotent). False, with a warning on
    stderr, on an untested moto version: ranges are then correct but slow."""
    global _applied
    if _applied:
        return True
    import moto
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if moto.__version__ != TESTED_MOTO:
        print(
            f"moto_ranges: written for moto {TESTED_MOTO}, found {moto.__version__}; "
            "ranged GETs left unpatched (re-check, then update TESTED_MOTO)",
            file=sys.stderr,
        )
        return False
    # A property (AttributeError here means moto changed: re-check the patch).
    value: Any = inspect.getattr_static(FakeKey, "value")
    original_key_response = S3Response.key_response

    def lazy_value(self: Any) -> Any:
        if getattr(_local, "ranged", False):
            return KeyView(self)
        return value.fget(self)

    @functools.wraps(original_key_response)
    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        if request.method != "GET" or not request.headers.get("range"):
            return original_key_response(self, request, full_url, headers)
        _local.ranged = True
        try:
            status, response_headers, body = original_key_response(self, request, full_url, headers)
        finally:
            _local.ranged = False
        if isinstance(body, KeyView):  # a Range moto answers with the whole object
            body = body.read_all()
        return status, response_headers, body

    FakeKey.value = property(lazy_value, value.fset)  # type: ignore[method-assign,assignment]
    S3Response.key_response = key_response  # type: ignore[method-assign]
    _patch_sqs_retention_check()
    _patch_backend_lookup()
    _applied = True
    return True


def _patch_backend_lookup() -> None:
    from moto import backends

    # moto's dispatcher lists its own package directory (a listdir and ~180
    # stats) on every request to find the backend; the directory does not change.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _patch_sqs_retention_check() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    """Run moto_server with the patch applied."""
    apply()
    from moto import server

    server.main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
