"""The bounded-run helper: reused threads, time and memory stops, abandoned runs."""

from __future__ import annotations

import threading
import time

from chalicelib.runners import bounded_run


def run(fn, *, timeout=5.0, grace=0.2, rss=lambda: 0, rss_limit=0, stop=lambda: None):
    return bounded_run.run(fn, timeout=timeout, grace=grace, tick=0.01, rss=rss, rss_limit=rss_limit, stop=stop)


def test_value_and_error_come_back_and_no_thread_is_started_per_run():
    assert run(lambda: 42).value == 42
    before = threading.active_count()
    names = set()
    for i in range(50):
        outcome = run(lambda i=i: (names.add(threading.current_thread().ident), i)[1])
        assert outcome.finished and outcome.value == i and outcome.stopped is None
    assert threading.active_count() == before
    assert len(names) == 1  # one worker served every sequential run

    def fail():
        raise ValueError("bad input")

    outcome = run(fail)
    assert isinstance(outcome.error, ValueError) and outcome.finished


def test_time_limit_calls_stop_and_the_run_ends():
    stop = threading.Event()
    outcome = run(lambda: stop.wait(5) and "stopped", timeout=0.05, stop=stop.set)
    assert outcome.stopped == "time" and outcome.finished and outcome.value == "stopped"


def test_memory_limit_is_checked_while_waiting():
    stop = threading.Event()
    readings = iter([100, 100, 10_000])
    outcome = run(
        lambda: stop.wait(5) and "stopped", rss=lambda: next(readings, 10_000), rss_limit=1_000, stop=stop.set
    )
    assert outcome.stopped == "memory" and outcome.finished


def test_a_run_that_ignores_stop_is_abandoned_in_time_and_does_not_block_the_next():
    release = threading.Event()
    started = time.monotonic()
    outcome = run(lambda: release.wait(10), timeout=0.05, grace=0.1)
    waited = time.monotonic() - started
    assert not outcome.finished and outcome.stopped == "time"
    assert waited < 1.0
    # The stuck worker is busy: the next run gets another one at once.
    assert run(lambda: "next").value == "next"
    release.set()


def test_no_time_left_stops_at_the_first_tick():
    stop = threading.Event()
    outcome = run(lambda: stop.wait(5), timeout=0.0, stop=stop.set)
    assert outcome.stopped == "time" and outcome.finished
