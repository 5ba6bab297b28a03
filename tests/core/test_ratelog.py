"""Repeated problems: the first line at once, then one a minute with what was left out."""

from __future__ import annotations

import logging

from core.ratelog import LogBudget, RateLimitedLog


def test_one_line_a_minute_per_kind_with_the_count_left_out() -> None:
    b = LogBudget(period_s=60.0)
    assert b.take("crc", 0.0) == 0  # the first at once
    assert [b.take("crc", t / 10) for t in range(1, 600)] == [None] * 599
    assert b.take("gap", 1.0) == 0  # another kind has its own budget
    assert b.take("crc", 60.0) == 599  # a minute on: one line, saying how many were left out
    assert b.take("crc", 61.0) is None
    assert b.take("crc", 500.0) == 1


def test_invented_kinds_do_not_grow_the_budget() -> None:
    b = LogBudget()
    for i in range(10_000):
        assert b.take(f"k{i}", float(i)) == 0
    assert len(b._last) <= 256


def test_the_logger_gets_the_lines_the_budget_allows(caplog) -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "t.ratelog"):
        for i in range(1000):
            now[0] = i * 0.04  # a bad frame every 40 ms for 40 s
            rl.log("frame", logging.WARNING, "bad frame %d", i)
        now[0] = 61.0
        assert rl.log("frame", logging.WARNING, "bad frame %d", 1000)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 0",
        "bad frame 1000 [999 more like this since the last line]",
    ]
