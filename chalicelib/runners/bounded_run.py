"""Runs of native code bounded in time and memory, on reused threads.

A run executes on a worker thread so that its caller can answer at its
deadline even while one long operator holds the run (onnxruntime checks
``RunOptions.terminate`` only between operators). The caller itself is the
watchdog: while it waits it wakes every ``tick`` seconds to check the clock
and the process's RSS, and asks the run to stop (``stop()``) when either is
past its limit. Nothing is started per request: workers are long-lived
and reused, and a run that ends within one tick costs no RSS read.

A worker whose run was abandoned (still inside an operator past the grace
period) is busy until that operator returns; the next run takes another
idle worker or starts one, so a stuck run never delays the next request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_MAX_IDLE = 2  # idle workers kept; more only exist while runs were abandoned


class Outcome:
    """How a bounded run ended: its value or error, and which limit stopped it."""

    __slots__ = ("value", "error", "stopped", "finished")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.stopped: str | None = None  # "time" or "memory" when a limit asked it to stop
        self.finished = False  # False: abandoned after the grace period, still running


class _Job:
    __slots__ = ("fn", "outcome", "done")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] | None = fn
        self.outcome = Outcome()
        # A bare lock, held until the run ends: the cheapest wait-with-timeout.
        self.done = threading.Lock()
        self.done.acquire()


class _Worker:
    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="bounded-run", daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self.jobs.get()
            fn, job.fn = job.fn, None
            try:
                job.outcome.value = fn() if fn is not None else None
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.outcome.error = exc
            job.outcome.finished = True
            # Back in the idle list before the caller wakes, so the next run reuses this thread.
            keep = _give_back(self)
            job.done.release()
            del job, fn
            if not keep:
                return


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


def _take() -> _Worker:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return _Worker()


def _give_back(worker: _Worker) -> bool:
    with _idle_lock:
        if len(_idle) >= _MAX_IDLE:
            return False
        _idle.append(worker)
        return True


def run(
    fn: Callable[[], Any],
    *,
    timeout: float,
    grace: float,
    tick: float,
    rss: Callable[[], int],
    rss_limit: int,
    stop: Callable[[], None],
) -> Outcome:
    """Call ``fn`` on a worker thread and wait for it, at most ``timeout + grace`` seconds.

    Every ``tick`` seconds of waiting, past ``timeout`` (``stopped = "time"``)
    or with ``rss()`` above ``rss_limit`` (``"memory"``; 0 disables) ``stop()``
    is called once and the wait goes on for up to ``grace`` seconds more.
    A run still going then is abandoned (``finished`` False).
    """
    job = _Job(fn)
    outcome = job.outcome
    _take().jobs.put(job)
    ends = time.monotonic() + timeout
    while not job.done.acquire(timeout=tick):
        now = time.monotonic()
        if now >= ends:
            outcome.stopped = "time"
        elif rss_limit and rss() > rss_limit:
            outcome.stopped = "memory"
        else:
            continue
        stop()
        # The whole wait stays within timeout + grace, whichever limit stopped it.
        if not job.done.acquire(timeout=max(0.0, ends + grace - now)):
            return outcome  # abandoned: the worker finishes (or not) on its own
        break
    return outcome
