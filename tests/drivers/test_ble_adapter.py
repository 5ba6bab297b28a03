"""When a stuck Bluetooth adapter gets reset (drivers/ble_adapter.py)."""

from __future__ import annotations

import asyncio

from drivers.ble_adapter import AdapterHealth, BleAdapter


def test_reset_needs_enough_failures_over_enough_time() -> None:
    h = AdapterHealth(failures_to_reset=3, min_span_s=60.0, cooldown_s=600.0)
    assert [h.failure(t) for t in (0.0, 1.0, 2.0)] == [False, False, False]  # a burst
    assert h.failure(61.0) is True and h.resets == 1
    assert [h.failure(t) for t in (100.0, 200.0, 300.0, 400.0)] == [False] * 4  # cooldown
    assert h.failure(700.0) is True and h.resets == 2


def test_a_success_starts_the_count_over() -> None:
    h = AdapterHealth(failures_to_reset=3, min_span_s=0.0, cooldown_s=0.0)
    h.failure(0.0)
    h.failure(1.0)
    h.success()
    assert h.failure(2.0) is False and h.failures == 1


async def test_reset_runs_under_the_adapter_lock_and_errors_are_counted() -> None:
    seen: list[bool] = []
    adapter: BleAdapter

    async def reset() -> None:
        seen.append(adapter.lock.locked())
        raise PermissionError("org.bluez.Error.NotPermitted")

    adapter = BleAdapter(reset, AdapterHealth(failures_to_reset=1, min_span_s=0, cooldown_s=0))
    assert await adapter.failure() is False  # the reset failed: reported, not raised
    assert seen == [True] and adapter.reset_errors == 1
    async with adapter:
        assert adapter.lock.locked()
    assert not adapter.lock.locked()
    assert BleAdapter.wrap(adapter) is adapter
    lock = asyncio.Lock()
    assert BleAdapter.wrap(lock).lock is lock
