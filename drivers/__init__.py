"""Device drivers: pure protocol codecs and sessions, and thin asyncio shells that perform them.

Every driver the gateway runs has the same two methods (:class:`Driver`). The layers
inside (see ``docs/architecture.md``):

- codecs, bytes ↔ typed messages, no state: :mod:`drivers.cart_protocol`,
  :mod:`drivers.patch_gatt`, :mod:`drivers.polar_pmd`, :mod:`drivers.gatt_standard`;
- pure state: :mod:`drivers.cart_stream`, :mod:`drivers.patch_stream`,
  :mod:`drivers.polar_stream`, :mod:`drivers.clock`, and the conversations
  :mod:`drivers.patch_session` (with its RACP part, :mod:`drivers.patch_backfill`),
  :mod:`drivers.polar_session`;
- shells doing I/O: :mod:`drivers.ble_driver` (bleak), :mod:`drivers.cart_driver`
  (pyserial), with :mod:`drivers.ble_link` and :mod:`drivers.ble_adapter`.

Nothing here imports ``gateway``: settings arrive as small frozen dataclasses.
"""

from __future__ import annotations

from typing import Any, Protocol

from core.events import StreamPosition

__all__ = ["Driver"]


class Driver(Protocol):
    """One device's driver, as the gateway runs it."""

    @property
    def source(self) -> str:
        """The device id."""
        ...

    async def run(self) -> None:
        """Connect, stream into the sink, reconnect; returns only when cancelled."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters since the driver was created, read live (nothing is copied)."""
        ...

    def position(self) -> StreamPosition | None:
        """Where the device's stream stands, to resume it after a gateway restart."""
        ...
