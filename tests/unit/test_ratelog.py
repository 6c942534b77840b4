"""RateLimitedLog: a burst passes, a flood costs no log lines, the count of what was held back
is reported with the next line."""

from __future__ import annotations

import logging

import pytest

from router.ratelog import RateLimitedLog


def test_a_flood_is_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), burst=3, interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        written = [limited.warning("bad", "dropped %d", i) for i in range(1000)]
    assert sum(written) == 3 and len(caplog.records) == 3
    now[0] = 10.0  # one token back
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert limited.warning("bad", "dropped %d", 1000)
    assert caplog.records[0].getMessage() == "dropped 1000 (997 similar line(s) held back)"


def test_keys_are_limited_separately() -> None:
    limited = RateLimitedLog(logging.getLogger("t"), burst=1, clock=lambda: 0.0)
    assert limited.warning("a", "x") and limited.warning("b", "y")
    assert not limited.warning("a", "x")
