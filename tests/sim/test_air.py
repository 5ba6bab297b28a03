"""The virtual air (``sim.bumble_backend``): a device that leaves it leaves no link behind.

Over a real radio a peripheral whose central vanished sees the link end at its supervision
timeout and advertises again. The virtual air must do the same, or a simulated patch holds a
link to nobody: it never advertises again, and its own disconnect waits for ever (bumble's
has no time limit), which hung the test suite at event-loop teardown once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bleak import BleakClient

from sim.bumble_backend import SimBleWorld
from sim.patch import SimPatch
from sim.polar_patch import SimBlePatch
from tests.support import wait_for

pytestmark = pytest.mark.timeout(60)

_BOUND_S = 5.0  # a disconnect on the virtual air takes a few loop turns


async def _connect_cut_short(world: SimBleWorld, patch: Any, turns: int) -> None:
    """A bleak client whose connect is cancelled ``turns`` loop turns after the patch saw
    the link come up (while the central still sets the connection up)."""
    client = BleakClient(patch.address, backend=world.backend(), timeout=5.0)
    connecting = asyncio.create_task(client.connect())
    async with asyncio.timeout(_BOUND_S):
        while not (patch.connected or connecting.done()):
            await asyncio.sleep(0)
    for _ in range(turns):
        await asyncio.sleep(0)
    connecting.cancel()
    if await asyncio.gather(connecting, return_exceptions=True) == [None]:
        await client.disconnect()  # set up before the cancel came: an ordinary disconnect


@pytest.mark.parametrize("kind", [SimPatch, SimBlePatch])
async def test_a_central_that_leaves_mid_setup_leaves_no_link_behind(kind: type) -> None:
    """A connection attempt cancelled at any moment of its setup: the patch's link ends
    (it advertises again: the next central connects) and its disconnect never waits for
    ever."""
    world = SimBleWorld()
    async with kind(world, speed=10.0) as patch:
        for turns in range(0, 40, 3):
            await _connect_cut_short(world, patch, turns)
            await wait_for(lambda: not patch.connected, f"the link ended ({turns} turns)", 5)
            async with asyncio.timeout(_BOUND_S):
                await patch.disconnect()
        client = BleakClient(patch.address, backend=world.backend(), timeout=5.0)
        await client.connect()  # the patch is free again
        assert patch.connected
        await client.disconnect()


async def test_a_patch_that_leaves_the_air_ends_its_centrals_link() -> None:
    """The other way round: a patch gone from the air (its controller removed without a
    disconnect) ends its central's link at once, as a real supervision timeout would; the
    patch sees its own end of the link go too."""
    world = SimBleWorld()
    lost = asyncio.Event()
    async with SimPatch(world, speed=10.0) as patch:
        client = BleakClient(
            patch.address,
            backend=world.backend(),
            timeout=5.0,
            disconnected_callback=lambda _c: lost.set(),
        )
        await client.connect()
        world.remove_device(patch.device)  # vanished, no goodbye
        async with asyncio.timeout(_BOUND_S):
            await lost.wait()
        assert not client.is_connected
        await wait_for(lambda: not patch.connected, "the patch's end of the link", 5)
