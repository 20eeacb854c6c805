"""The invocation deadline: bounded waits, never extended by nesting."""

import time

import pytest

from chalicelib import deadline
from chalicelib.errors import DeadlineExceeded


def test_no_deadline_leaves_the_cap():
    assert not deadline.has_deadline()
    assert deadline.remaining(120.0) == 120.0
    deadline.check("lock")  # never raises without a deadline


def test_remaining_is_bounded_by_the_deadline():
    with deadline.bounded(0.5):
        assert deadline.has_deadline()
        assert 0.0 < deadline.remaining(120.0) <= 0.5
        assert deadline.remaining(0.1) == 0.1
    assert not deadline.has_deadline()


def test_nesting_can_only_shorten():
    with deadline.bounded(0.2):
        with deadline.bounded(60.0):
            assert deadline.remaining(120.0) <= 0.2
        with deadline.bounded(0.05):
            assert deadline.remaining(120.0) <= 0.05


def test_check_raises_the_documented_error_once_past():
    with deadline.bounded(0.01):
        time.sleep(0.02)
        assert deadline.remaining(5.0) == 0.0
        with pytest.raises(DeadlineExceeded) as info:
            deadline.check("s3")
    body = info.value.to_body("rid")
    assert info.value.STATUS_CODE == 504
    assert body["error"] == "TIMEOUT" and body["stage"] == "s3"
