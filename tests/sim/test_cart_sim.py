"""The simulated cart answers START and STOP as docs/protocols/cart-serial.md says, seen
from the host's end of a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import pytest

from drivers.cart_protocol import (
    CartDecoder,
    EcgMsg,
    FrameType,
    HeartbeatMsg,
    HelloMsg,
    StageMsg,
    encode_command,
)
from sim.cart import SimCart

pytestmark = pytest.mark.timeout(30)


async def _read_for(fd: int, decoder: CartDecoder, seconds: float) -> list[object]:
    """Every message the cart sends in the next ``seconds`` (wall clock)."""
    got: list[object] = []
    end = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < end:
        with contextlib.suppress(BlockingIOError):  # nothing to read yet
            got += decoder.feed(os.read(fd, 65536))
        await asyncio.sleep(0.01)
    return got


async def test_stop_stops_ecg_frames_and_start_resumes_them_at_the_current_sample() -> None:
    async with SimCart(speed=10.0) as cart:
        fd = os.open(cart.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        decoder = CartDecoder()
        try:
            before = await _read_for(fd, decoder, 0.3)
            ecg = [m for m in before if isinstance(m, EcgMsg)]
            assert ecg, "streams from power-up without waiting for START"
            os.write(fd, encode_command(FrameType.STOP))
            await _read_for(fd, decoder, 0.1)  # frames already on the line
            stopped = await _read_for(fd, decoder, 0.4)  # 4 s of the cart's time
            assert not [m for m in stopped if isinstance(m, EcgMsg)]
            beats = [m for m in stopped if isinstance(m, HeartbeatMsg)]
            assert len(beats) >= 2 and beats[-1].at_sample > ecg[-1].first_sample + 1000
            os.write(fd, encode_command(FrameType.START))
            resumed = await _read_for(fd, decoder, 0.3)
        finally:
            os.close(fd)
    kinds = [type(m) for m in resumed if not isinstance(m, HeartbeatMsg)]
    assert kinds[:2] == [HelloMsg, StageMsg] and EcgMsg in kinds
    first = next(m for m in resumed if isinstance(m, EcgMsg)).first_sample
    assert first >= beats[-1].at_sample  # the samples acquired while stopped are not sent


async def test_a_late_host_then_a_stalled_one_get_every_frame_whole_and_in_order() -> None:
    """Before START nobody listens: a host that opens the port after the pty has filled
    finds the latest frames, whole (no cut frame). After START the cart queues what the
    line cannot take yet: a host that reads nothing for 0.4 s (about 70 kB at
    10 x, three times what the pty holds) and then reads on gets every ECG frame, in order;
    so does one whose whole event loop stalls for 0.4 s (the cart then writes what fell
    due in one burst)."""
    async with SimCart(speed=10.0) as cart:
        await asyncio.sleep(0.3)  # about 50 kB written to nobody
        fd = os.open(cart.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        decoder = CartDecoder()
        try:
            os.write(fd, encode_command(FrameType.START))
            got = await _read_for(fd, decoder, 0.2)
            await asyncio.sleep(0.4)
            got += await _read_for(fd, decoder, 0.3)
            time.sleep(0.4)  # the loop stalls: the cart too
            got += await _read_for(fd, decoder, 0.5)
        finally:
            os.close(fd)
    assert cart.forgotten > 0 and cart.overflow_bytes == 0
    firsts = [m.first_sample for m in got if isinstance(m, EcgMsg)]
    assert len(firsts) > 200
    assert firsts == list(range(firsts[0], firsts[0] + 20 * len(firsts), 20))
    assert decoder.errors == 0
