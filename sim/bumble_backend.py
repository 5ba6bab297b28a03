"""A bleak backend on a bumble virtual controller: BLE without a radio.

A :class:`SimBleWorld` owns one ``bumble`` :class:`~bumble.link.LocalLink` (the
"air"). Simulated peripherals (:mod:`sim.polar_patch`) attach their own
controller to it, and :meth:`SimBleWorld.backend` returns a
:class:`~bleak.backends.client.BaseBleakClient` subclass bound to that world,
to pass as ``backend=`` to :class:`bleak.BleakClient` or to
``bleak_retry_connector.establish_connection``::

    world = SimBleWorld()
    client = BleakClient(patch.address, backend=world.backend())

Each client instance brings up its own central (a bumble ``Device`` on a fresh
controller on the link) when it connects and removes it when the link goes
down, so several clients can be connected at once. Addresses are the
peripherals' *random* static addresses (``F0:..``); the bumble central
connects to ``Address(address)`` which is random by default. A device that
leaves the air (a central whose connect failed or was cancelled, a patch that
stopped) ends its links as a real peer's supervision timeout would: bumble's
link alone would leave the other end holding a link to nobody.

Only what the gateway uses is implemented: connect (with MTU exchange and
full discovery), read/write characteristic and descriptor, notifications and
indications, disconnect and the unsolicited-disconnect callback. Pairing is
not supported (the simulated patch needs none).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str
from bumble import hci, ll
from bumble.att import ATT_Error
from bumble.controller import Controller
from bumble.device import Connection, Device
from bumble.gatt import Characteristic
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

__all__ = [
    "BumbleBleakClient",
    "SimBleWorld",
    "disconnect_bounded",
    "leave_the_air",
    "notify_kept",
]

_T = TypeVar("_T")

_LOGGER = logging.getLogger(__name__)

MTU = 247
"""ATT MTU the central asks for (what a Pi + BlueZ typically negotiates with a patch)."""

_VANISHED = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
"""Why a link to a device that left the air ends (a real peer's supervision timeout)."""
_DISCONNECT_S = 5.0  # a disconnect over the virtual air takes a few loop turns

_PROPERTY_NAMES = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}


class SimBleWorld:
    """One virtual radio space: a bumble LocalLink plus address allocation.

    Create one per test or demo; pass it to simulated peripherals and take the
    bleak backend class from :meth:`backend`.
    """

    def __init__(self) -> None:
        self.link = LocalLink()
        self._numbers = itertools.count(1)
        self._controllers: dict[int, Controller] = {}  # by id() of the Device they serve
        self.jammed = False
        self.resets = 0

    def new_address(self, prefix: int) -> str:
        """A fresh static address ``PP:00:00:00:NN:NN`` (``prefix`` >= 0xC0 => random static)."""
        n = next(self._numbers)
        return f"{prefix:02X}:00:00:00:{n >> 8 & 0xFF:02X}:{n & 0xFF:02X}"

    def new_device(self, name: str, address: str) -> Device:
        """A bumble Device on a new controller attached to this world's link (not powered)."""
        controller = Controller(name, link=self.link, public_address=address)
        host = Host(controller, AsyncPipeSink(controller))
        device = Device(name=name, address=Address(address), host=host)
        device.random_address = Address(address)
        self._controllers[id(device)] = controller
        return device

    async def open_central(self) -> Device:
        """A new central (a bleak client's own Device) on this world's air."""
        return self.new_device("gateway-central", self.new_address(0xD0))

    def remove_device(self, device: Device) -> None:
        """Detach a device's controller from the link (it can no longer be reached).

        Its links end as over a real radio when a device vanishes (a supervision timeout,
        on both sides): its peers disconnect and advertise again. Also a link whose setup
        is still on its way over the air (a central whose connect was cancelled as the
        patch accepted it): it ends once it is up. Never a link left up to nobody: the
        peer would never advertise again, and its own disconnect would wait for ever.
        """
        controller = self._controllers.pop(id(device), None)
        if controller is not None:
            leave_the_air(self.link, controller, _VANISHED)

    def jam(self) -> None:
        """Simulate a stuck host adapter: every connection attempt fails until reset."""
        self.jammed = True

    async def reset_adapter(self) -> None:
        """What a power cycle of the adapter does to a stuck one (see ble_adapter)."""
        self.jammed = False
        self.resets += 1

    def backend(self) -> type[BumbleBleakClient]:
        """A bleak backend class whose clients live in this world."""
        return type("BoundBumbleBleakClient", (BumbleBleakClient,), {"world": self})


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend on a bumble central. Use :meth:`SimBleWorld.backend`."""

    world: SimBleWorld  # set on the subclass made by SimBleWorld.backend() (or a remote air's)

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        services: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault("disconnected_callback", None)
        super().__init__(address_or_ble_device, **kwargs)
        if not hasattr(type(self), "world"):
            raise TypeError("use SimBleWorld.backend() to get a backend class bound to a world")
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._closing = False
        self._proxies: dict[int, Any] = {}  # handle -> bumble Characteristic/DescriptorProxy
        self._notify: dict[int, Any] = {}  # value handle -> subscriber

    # --- connectivity ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return 23
        return self._connection.gatt_client.mtu

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        # bleak-retry-connector passes its own 20 s; the client's timeout is the tighter bound
        timeout = min(kwargs.get("timeout", self._timeout), self._timeout)
        if pair:
            _LOGGER.debug("pairing not supported by the bumble sim backend; ignored")
        world = self.world
        if world.jammed:  # a stuck adapter: the attempt goes nowhere
            await asyncio.sleep(min(timeout, 0.05))
            raise BleakError(f"{self.address}: le-connection-abort-by-local (adapter stuck)")
        try:
            async with asyncio.timeout(timeout):
                device = await world.open_central()
                self._device = device
                await device.power_on()
                connection = await device.connect(Address(self.address), timeout=timeout)
                self._connection = connection
                connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
                await connection.gatt_client.request_mtu(MTU)
                self.services = await self._discover(connection)
        except BaseException as exc:
            self._connection = None  # (its link ends as the central leaves the air)
            self._teardown()
            if isinstance(exc, (TimeoutError, asyncio.CancelledError)):
                raise
            raise BleakError(f"bumble connect to {self.address} failed: {exc!r}") from exc

    async def _discover(self, connection: Connection) -> BleakGATTServiceCollection:
        gc = connection.gatt_client
        collection = BleakGATTServiceCollection()
        self._proxies.clear()
        for s in await gc.discover_services():
            service = BleakGATTService(s, s.handle, _full_uuid(s.uuid))
            collection.add_service(service)
            for c in await gc.discover_characteristics((), s):
                props = [n for flag, n in _PROPERTY_NAMES.items() if c.properties & flag]
                char = BleakGATTCharacteristic(
                    c,
                    c.handle,
                    _full_uuid(c.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self.mtu_size - 3,
                    service,
                )
                collection.add_characteristic(char)
                self._proxies[c.handle] = c
                for d in await gc.discover_descriptors(c):
                    collection.add_descriptor(
                        BleakGATTDescriptor(d, d.handle, _full_uuid(d.type), char)
                    )
                    self._proxies[d.handle] = d
        return collection

    def _on_disconnection(self, reason: int) -> None:
        self._connection = None
        # detach our controller once bumble has finished handling this event
        asyncio.get_running_loop().call_soon(self._teardown)
        if not self._closing and self._disconnected_callback is not None:
            self._disconnected_callback()

    def _teardown(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            self.world.remove_device(device)

    async def disconnect(self) -> None:
        connection = self._connection
        self._closing = True
        if connection is not None:
            try:
                await connection.disconnect()
            except Exception as exc:  # link already gone
                _LOGGER.debug("disconnect: %r", exc)
        self._connection = None
        self._teardown()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not supported by the bumble sim backend")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not supported by the bumble sim backend")

    # --- I/O ------------------------------------------------------------------
    def _client(self) -> Any:
        if self._connection is None:
            raise BleakError("not connected")
        return self._connection.gatt_client

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        with _att_errors():
            return bytearray(await self._client().read_value(characteristic.handle))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        with _att_errors():
            return bytearray(await self._client().read_value(descriptor.handle))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        with _att_errors():
            handle = characteristic.handle
            await self._client().write_value(handle, bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        with _att_errors():
            await self._client().write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        proxy = self._proxies[characteristic.handle]

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        self._notify[characteristic.handle] = subscriber
        with _att_errors():
            await self._client().subscribe(proxy, subscriber, prefer_notify=True)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        proxy = self._proxies[characteristic.handle]
        subscriber = self._notify.pop(characteristic.handle, None)
        await self._client().unsubscribe(proxy, subscriber)


@contextlib.contextmanager
def _att_errors() -> Iterator[None]:
    """An ATT error response from the peripheral, raised as bleak raises it over BlueZ (a
    ``BleakError`` naming the error), not as bumble's own exception type."""
    try:
        yield
    except ATT_Error as exc:
        raise BleakError(f"ATT error 0x{exc.error_code:02x} ({exc.error_name})") from exc


async def notify_kept(
    device: Device,
    connection: Connection | None,
    characteristic: Characteristic,
    kept: list[_T],
    encode: Callable[[_T], bytes],
) -> None:
    """A simulated peripheral notifies the values it kept (a patch's presses made while no
    gateway listened), oldest first, on ``connection`` once it has enabled the
    characteristic's notifications, each removed from ``kept`` once sent; what could not be
    sent (nobody subscribed yet, or the link went away mid-send) stays kept."""
    if connection is None or not kept:
        return
    if not device.gatt_server.read_cccd(connection, characteristic)[0] & 0x01:
        return  # connected, but notifications not enabled (yet)
    while kept:
        try:
            await device.notify_subscriber(connection, characteristic, encode(kept[0]))
        except Exception:
            return  # the link went away mid-send: kept for the next connection
        kept.pop(0)


async def disconnect_bounded(connection: Connection | None) -> None:
    """A simulated peripheral drops its link (if any): at most ``_DISCONNECT_S`` (bumble's
    own wait for the disconnection has no limit; a stop must never hang on it)."""
    if connection is None:
        return
    try:
        async with asyncio.timeout(_DISCONNECT_S):
            await connection.disconnect()
    except TimeoutError:
        _LOGGER.warning("the link to %s did not end within %g s", connection.peer_address,
                        _DISCONNECT_S)  # fmt: skip
    except Exception as exc:  # the link is gone already
        _LOGGER.debug("disconnect: %r", exc)


def leave_the_air(link: LocalLink, controller: Controller, reason: int) -> None:
    """``controller`` leaves ``link``; each of its links ends with ``reason``, now and once
    more after what is already on its way over the air (a CONNECT_IND sent just before,
    which still brings a link up at the peer)."""
    _end_links(controller, reason)
    if controller in link.controllers:
        link.remove_controller(controller)
    asyncio.get_running_loop().call_soon(_end_links, controller, reason)


def _end_links(controller: Controller, reason: int) -> None:
    """Every LE link ``controller`` holds ends with ``reason``: its peer hears it over the
    air (if still there), its own host (if any) by a disconnection event."""
    for conn in list(controller.le_connections.values()):
        with contextlib.suppress(Exception):  # (the peer may have left the air already)
            conn.send_ll_control_pdu(ll.TerminateInd(reason))
        controller.on_le_disconnected(conn, reason)


def _full_uuid(uuid: Any) -> str:
    """bumble UUID -> bleak's lower-case 128-bit string."""
    return normalize_uuid_str(uuid.to_hex_str("-"))
