"""Capped, jittered exponential backoff (drivers/backoff.py)."""

from __future__ import annotations

import random

from core.backoff import Backoff, backoff_s


def test_delay_doubles_up_to_the_cap_and_is_jittered() -> None:
    rng = random.Random(1)
    for failures in range(1, 80):
        nominal = min(30.0, 0.5 * 2 ** (failures - 1))
        d = backoff_s(failures, (0.5, 30.0), rng)
        assert 0.5 * nominal <= d <= nominal


def test_jitter_spreads_gateways_that_failed_together() -> None:
    delays = [Backoff((1.0, 60.0), random.Random(seed)) for seed in range(50)]
    for b in delays:
        for _ in range(5):
            last = b.next()
    firsts = {round(b.next(), 3) for b in delays}
    assert len(firsts) > 40  # not in lockstep
    assert last <= 60.0


def test_reset_and_at_cap() -> None:
    b = Backoff((1.0, 8.0), random.Random(0))
    assert [round(b.next() / 2**i, 3) <= 1.0 for i in range(4)] == [True] * 4
    b.reset()
    assert b.next() <= 1.0
    assert 4.0 <= b.at_cap() <= 8.0
    assert b.failures == 2
