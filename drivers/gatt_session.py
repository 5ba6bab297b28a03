"""The vocabulary between a pure BLE device session and the bleak shell that performs it.

A session (:class:`~drivers.patch_session.PatchSession`,
:class:`~drivers.polar_session.PolarSession`) is a synchronous state machine in the
h11 style: the shell (:class:`~drivers.ble_driver.BleDriver`) tells it what happened —
the link came up with these characteristics, a read returned, a notification arrived,
time passed, the link was lost — and the session answers with what to *do* (the
commands below, performed in order) and what to *deliver* (sample blocks, gaps and
device events for the sink). The session never awaits and never touches bleak, so
every conversation, including the broken ones, is tested by feeding it bytes.

Times: ``now`` is UTC POSIX seconds (when a sample arrived: clock tracking), ``mono`` a
monotonic clock in seconds (timeouts); the shell passes both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from core.block import SampleBlock
from core.events import DeviceEvent, Gap, StreamPosition

__all__ = [
    "Command",
    "Disconnect",
    "GattSession",
    "Output",
    "Read",
    "Subscribe",
    "Write",
]


@dataclass(frozen=True, slots=True)
class Read:
    """Read a characteristic; the shell answers with :meth:`GattSession.read_done`."""

    uuid: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Enable notifications or indications of a characteristic."""

    uuid: str


@dataclass(frozen=True, slots=True)
class Write:
    """Write a characteristic with response; the shell answers with
    :meth:`GattSession.write_done`."""

    uuid: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End this connection (the shell disconnects; the supervisor reconnects)."""

    reason: str
    failed: bool = False
    """True when the session counts as a failure (nothing streamed, the peer refused)."""


Command = Read | Subscribe | Write | Disconnect
Output = SampleBlock | Gap | DeviceEvent | Command
Characteristics = Mapping[str, frozenset[str]]
"""uuid → its properties (``"read"``, ``"notify"``, ``"indicate"``, ``"write"``...)."""


class GattSession(Protocol):
    """What the BLE shell drives. Every method returns the outputs it caused, in order."""

    source: str

    def connected(
        self, chars: Characteristics, mtu: int | None, now: float, mono: float
    ) -> list[Output]: ...

    def read_done(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]: ...

    def write_done(self, uuid: str, now: float, mono: float) -> list[Output]: ...

    def notified(self, uuid: str, data: bytes, now: float, mono: float) -> list[Output]: ...

    def tick(self, now: float, mono: float) -> list[Output]: ...

    def link_lost(self, reason: str, now: float, mono: float) -> list[Output]: ...

    @property
    def delivered(self) -> bool:
        """Whether the current connection delivered data (the backoff starts over)."""
        ...

    def stats(self) -> dict[str, Any]: ...

    def position(self) -> StreamPosition | None: ...

    def resume(self, pos: StreamPosition) -> None: ...
