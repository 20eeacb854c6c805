"""The current invocation's deadline: every wait ends before the function does.

API Gateway gives up after 29 s and Lambda kills a function at its timeout.
A wait that outlives either leaves the client with a gateway 504 (or nothing
at all), never our error body. So each invocation runs :func:`bounded` by
the time Lambda says is left (``context.get_remaining_time_in_millis()``)
minus a margin for writing the error and the logs, and everything that may
wait (lock polls, S3 calls and their retries, inference) takes
:func:`remaining` as its upper bound and calls :func:`check` between steps.

The deadline lives in a ``ContextVar``: a helper thread must be started with
``contextvars.copy_context().run`` to see it.
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from typing import Iterator

from chalicelib.errors import DeadlineExceeded

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("efs_ml_deadline", default=None)


@contextmanager
def bounded(seconds: float | None) -> Iterator[None]:
    """Run the block with a deadline ``seconds`` from now.

    ``None`` adds no bound. A nested call can only shorten the deadline,
    never extend the one it runs inside.
    """
    current = _deadline.get()
    if seconds is not None:
        mine = time.monotonic() + max(seconds, 0.0)
        current = mine if current is None else min(current, mine)
    token = _deadline.set(current)
    try:
        yield
    finally:
        _deadline.reset(token)


def invocation_seconds(context: object, margin: float, cap: float | None) -> float | None:
    """How long an invocation may run: Lambda's remaining time
    (``context.get_remaining_time_in_millis()``) less ``margin``, and at most
    ``cap`` (API Gateway's 29 s for HTTP). Without a Lambda context (chalice
    local, tests) it is ``cap``; ``None`` means unbounded."""
    get = getattr(context, "get_remaining_time_in_millis", None)
    seconds = cap
    if callable(get):
        try:
            left = float(get()) / 1000.0 - margin
        except (TypeError, ValueError):
            return seconds
        seconds = left if seconds is None else min(seconds, left)
    return seconds


def remaining(cap: float) -> float:
    """Seconds a wait may take: ``cap``, or less if the deadline is nearer (never < 0)."""
    deadline = _deadline.get()
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


def has_deadline() -> bool:
    """Whether the current context runs under a deadline."""
    return _deadline.get() is not None


def check(what: str) -> None:
    """Raise :class:`DeadlineExceeded` naming ``what`` once the deadline has passed."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(what)
