"""The serial driver reading a simulated cart over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import numpy as np
import pytest

from core.events import DriverError, RecordingSink
from core.tasks import cancel_and_wait
from drivers.cart_driver import CartDriver, CartSettings
from drivers.cart_protocol import FrameType
from sim.cart import SimCart
from tests.support import wait_for

pytestmark = pytest.mark.timeout(60)


def _driver(port: str, sink: RecordingSink, silence_s: float = 5.0) -> CartDriver:
    settings = CartSettings("cart-1", port, silence_timeout_s=silence_s)
    return CartDriver(settings, sink, reconnect_delay_s=(0.05, 0.2))


@contextlib.asynccontextmanager
async def _running(driver: CartDriver):
    task = asyncio.create_task(driver.run())
    try:
        yield task
    finally:
        await cancel_and_wait(task)


def _kinds(sink: RecordingSink) -> list[str]:
    return [e.kind for e in sink.events]


async def test_pty_stream_with_corruption_and_drop() -> None:
    async with SimCart(speed=4.0, stage_s=1.0, seed=3) as cart:
        sink = RecordingSink()
        drv = _driver(cart.port, sink)
        async with _running(drv):
            await wait_for(lambda: drv.stats()["samples"] >= 1000, "first second of ECG")
            cart.corrupt_next_frame()
            await wait_for(lambda: drv.stats()["crc_errors"] >= 1, "the corrupted frame")
            cart.drop_frames(3)
            # the corrupted frame and the dropped ones may be adjacent: one gap or two
            await wait_for(lambda: drv.stats()["gap_samples"] >= 80, "the dropped frames")
            await wait_for(lambda: drv.stats()["samples"] >= 4000, "more ECG")
        # START was sent and answered with HELLO and the current stage
        assert FrameType.START in cart.commands
        assert "device_info" in _kinds(sink) and "stage" in _kinds(sink)
        assert "blood_pressure" in _kinds(sink) and "error" in _kinds(sink)
        blocks, gaps = sink.blocks, sink.gaps
        assert sum(g.n_samples for g in gaps) == 80 and len(gaps) in (1, 2)
        # received blocks + gaps tile the sample sequence exactly, nothing twice
        spans = [(b.seq, b.end_seq) for b in blocks] + [(g.first_seq, g.end_seq) for g in gaps]
        spans.sort()
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert all(b.samples.shape[1] == 12 and b.fs == 500.0 for b in blocks)
        starts = np.array([b.start for b in blocks])
        assert (np.diff(starts) > 0).all()


async def test_counters_count_since_the_driver_started_across_reopens() -> None:
    """A USB replug (the port reopened) must not reset what the driver counted."""
    async with SimCart(speed=4.0, seed=5) as cart:
        sink = RecordingSink()
        drv = _driver(cart.port, sink, silence_s=0.3)
        async with _running(drv):
            await wait_for(lambda: drv.stats()["samples"] >= 1000, "first second of ECG")
            cart.corrupt_next_frame()
            await wait_for(lambda: drv.stats()["frame_errors"] >= 1, "the corrupted frame")
            before = drv.stats()
            cart.pause(0.6)  # quiet for longer than the silence timeout: the port reopens
            await wait_for(lambda: drv.stats()["opens"] >= 2, "the port reopened")
            await wait_for(lambda: drv.stats()["frames_ok"] > before["frames_ok"] + 10, "ECG again")
            after = drv.stats()
        for name in ("frames_ok", "crc_errors", "cobs_errors", "frame_errors", "samples", "bytes"):
            assert after[name] >= before[name], name


async def test_silent_line_reopens_the_port() -> None:
    async with SimCart(speed=4.0) as cart:
        sink = RecordingSink()
        drv = _driver(cart.port, sink, silence_s=0.3)
        async with _running(drv):
            await wait_for(lambda: drv.stats()["samples"] > 0, "ECG")
            task = cart._task
            assert task is not None
            task.cancel()  # the cart goes quiet (cable pulled at the cart end)
            await wait_for(lambda: drv.stats()["silences"] >= 1, "the silence watchdog")
            await wait_for(lambda: drv.stats()["opens"] >= 2, "the port reopened")
        assert "disconnected" in _kinds(sink)


async def test_missing_port_is_retried_not_fatal() -> None:
    sink = RecordingSink()
    drv = _driver("/dev/does-not-exist-ecg", sink)
    async with _running(drv):
        await wait_for(lambda: drv.stats()["open_failures"] >= 2, "two failed opens")
    first = sink.events[0]
    assert isinstance(first, DriverError) and "does-not-exist" in first.detail
