"""The simulated air from another "process": HCI over loopback TCP (sim/hci_bridge.py).

Both ends run in this process here (the socket in between is real); what matters: a bleak
client through the remote air connects, is notified, and when its socket dies without a
word (a killed gateway) the patch sees the link end and can be reached again."""

from __future__ import annotations

import pytest

pytest.importorskip("bumble")

from bleak import BleakClient

from drivers import uuids
from sim.bumble_backend import SimBleWorld
from sim.hci_bridge import HciServer, RemoteBleWorld
from sim.patch import SimPatch
from tests.support import wait_for


async def test_a_remote_central_streams_and_a_dead_socket_ends_the_link() -> None:
    world = SimBleWorld()
    async with SimPatch(world, speed=10.0) as patch, HciServer(world) as server:
        remote = RemoteBleWorld(server.port)
        frames: list[bytes] = []
        client = BleakClient(patch.address, backend=remote.backend())
        await client.connect()
        assert client.mtu_size == 247
        await client.start_notify(uuids.PATCH_ECG, lambda _c, data: frames.append(bytes(data)))
        await wait_for(lambda: len(frames) >= 5, "live frames through the bridge")
        assert patch.connected
        remote.abort()  # the gateway process died: no disconnect, the socket is gone
        await wait_for(lambda: not patch.connected, "the patch sees the link end")
        again = BleakClient(patch.address, backend=remote.backend())
        await again.connect()
        await wait_for(lambda: patch.connected, "a new central connects")
        await again.disconnect()
        await wait_for(lambda: not patch.connected, "a clean disconnect too")
        assert server.connections == 2
