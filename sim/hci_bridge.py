"""The simulated air reachable from another process: HCI (H4) over a loopback TCP socket.

A :class:`~sim.bumble_backend.SimBleWorld` lives in one process (with its simulated
peripherals). :class:`HciServer` lets another process use that air the way a host uses a
Bluetooth controller on a UART: each TCP connection gets a fresh bumble
:class:`~bumble.controller.Controller` on the world's link, and the bytes on the socket
are its HCI packets. :class:`RemoteBleWorld` is the other side: a world-like object whose
:meth:`~RemoteBleWorld.backend` is the same bleak backend as the in-process world's, its
centrals' hosts talking HCI over such a socket.

What this is for: a gateway process that can be killed (``kill -9``) while the patch it
reads keeps recording in its own process, with its memory intact, as a real patch would.
When a connection closes (the gateway died, or it dropped its central), the controller
leaves the air and each of its links ends as a peer that vanished (the patch sees the
disconnection and advertises again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from bumble import hci
from bumble.controller import Controller
from bumble.device import Device
from bumble.host import Host
from bumble.transport.common import PacketParser, StreamPacketSink

from sim.bumble_backend import BumbleBleakClient, SimBleWorld, leave_the_air

__all__ = ["HciServer", "RemoteBleWorld"]

_LOGGER = logging.getLogger(__name__)
_PEER_GONE = hci.HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR


class _ControllerLink(asyncio.Protocol):
    """One TCP connection: a controller on the air whose host is the remote process."""

    def __init__(self, world: SimBleWorld, name: str) -> None:
        self.world = world
        self.name = name
        self.controller: Controller | None = None
        self.parser: PacketParser | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = self.world.new_address(0xD8)
        controller = Controller(self.name, link=self.world.link, public_address=address)
        controller.host = StreamPacketSink(transport)  # type: ignore[arg-type]
        self.controller = controller
        self.parser = PacketParser(controller)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        controller, self.controller = self.controller, None
        if controller is None:
            return
        controller.host = None  # nobody to tell any more
        # the central vanished: its links end for the peripherals
        leave_the_air(self.world.link, controller, _PEER_GONE)


class HciServer:
    """Serve fresh controllers on ``world``'s air over TCP on 127.0.0.1 (``port`` 0: any).

    ``async with HciServer(world) as server: ... server.port``
    """

    def __init__(self, world: SimBleWorld, port: int = 0) -> None:
        self.world = world
        self._port = port
        self._server: asyncio.Server | None = None
        self.connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    def _protocol(self) -> _ControllerLink:
        self.connections += 1
        return _ControllerLink(self.world, f"remote-central-{self.connections}")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def __aenter__(self) -> HciServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _HostSource(asyncio.Protocol):
    """Bytes from the remote controller, parsed into HCI packets for the local host."""

    def __init__(self) -> None:
        self.parser = PacketParser()

    def set_packet_sink(self, sink: Any) -> None:
        self.parser.set_packet_sink(sink)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)


class RemoteBleWorld:
    """The air of an :class:`HciServer` in another process, as the bleak backend sees it.

    Has what :class:`~sim.bumble_backend.BumbleBleakClient` asks of a world: centrals
    (:meth:`open_central`), their removal, and the adapter hooks (never jammed here).
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.jammed = False
        self.resets = 0
        self._transports: dict[int, asyncio.BaseTransport] = {}

    async def open_central(self) -> Device:
        """A bumble Device whose controller is a fresh one on the remote air."""
        loop = asyncio.get_running_loop()
        transport, source = await loop.create_connection(_HostSource, self.host, self.port)
        host = Host(source, StreamPacketSink(transport))  # type: ignore[arg-type]
        # a random static address (top two bits set), new for every central: a gateway
        # restarted after a kill must not collide with its predecessor's leftovers
        raw = bytearray(secrets.token_bytes(6))
        raw[0] |= 0xC0
        address = ":".join(f"{b:02X}" for b in raw)
        device = Device(name="gateway-central", address=hci.Address(address), host=host)
        device.random_address = hci.Address(address)
        self._transports[id(device)] = transport
        return device

    def remove_device(self, device: Device) -> None:
        """Close the central's socket: its controller leaves the air."""
        transport = self._transports.pop(id(device), None)
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """Test hook: every central's socket closed without a word, as when the process
        holding them is killed."""
        for transport in self._transports.values():
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    async def reset_adapter(self) -> None:
        self.resets += 1

    def backend(self) -> type[BumbleBleakClient]:
        """A bleak backend class whose clients use this remote air."""
        return type("RemoteBumbleBleakClient", (BumbleBleakClient,), {"world": self})
