"""The retained status message (``ecg-gateway/status/v1``): the one builder.

``online`` while running (every ``status_period_s``), ``offline`` at a clean exit and as
the Last Will. It carries each device's facts and the transmission's (``docs/mqtt.md``);
device facts are made JSON-safe (NaN → null, numpy → Python).

Times: ``time`` is when the status was made, ``connected_at`` when the connection it was
sent on (or, for the Will, that it guards) began. The Last Will is handed to the broker at
CONNECT, so it cannot know when the gateway will vanish: its ``time`` is null and it says
``last_will: true`` (the moment is when the broker published it); a clean exit's
``offline`` carries the real time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from core.units import iso_utc
from gateway import __version__
from gateway.outbox import Outbox
from gateway.payloads import STATUS_SCHEMA, json_safe

if TYPE_CHECKING:
    from gateway.channel import DeviceChannel

__all__ = ["StatusReporter", "build_status", "device_facts", "status_payload"]

log = logging.getLogger(__name__)


def build_status(
    gateway_id: str,
    state: str,
    *,
    now: float | None,
    devices: Mapping[str, Any] | None = None,
    transmission: Mapping[str, Any] | None = None,
    connected_at: float | None = None,
    last_will: bool = False,
    health: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status as a JSON-ready dict; ``now`` and ``connected_at`` in POSIX UTC seconds
    (``now`` None: not known when it will be read, the Last Will); ``health``: host facts
    (:mod:`gateway.health`, issue #14)."""
    body: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "gateway_id": gateway_id,
        "state": state,
        "time": None if now is None else iso_utc(now),
        "version": __version__,
        "devices": json_safe(dict(devices or {})),
    }
    if connected_at is not None:
        body["connected_at"] = iso_utc(connected_at)
    if last_will:
        body["last_will"] = True
    if transmission is not None:
        body["transmission"] = json_safe(dict(transmission))
    if health:
        body["health"] = json_safe(dict(health))
    return body


def device_facts(
    ch: DeviceChannel, driver: dict[str, Any], now: float, *, study: dict[str, Any] | None
) -> dict[str, Any]:
    """One device's block of the status: samples, gaps, heart rate, recording, the
    driver's counters (``driver``), acknowledgements and the study's upload."""
    rec = ch.recording
    stats = ch.stats()
    recording = None
    if rec is not None:
        recording = {
            "samples_written": rec.samples_written,
            "records_created": rec.records_created,
            "records_deleted": rec.records_deleted,
            "errors": stats["recording_errors"],
        }
    return {
        "samples": stats["samples"],
        "gaps": stats["gaps"],
        "gap_samples": stats["gap_samples"],
        "heart_rate_bpm": ch.pipeline.heart_rate_bpm,
        "recent_gaps": list(ch.gap_ledger)[-10:],
        "recording": recording,
        "driver": driver,
        "acknowledgements": ch.acks.facts(now),
        "channel": stats,
        "study": study,
        "progress": {
            "hours_recorded": round(ch.study.received / ch.study.fs / 3600.0, 3)
            if ch.study.fs
            else 0.0,
            "analysable_pct": ch.study.analysable_pct,
        },
    }


def status_payload(gateway_id: str, state: str, *, now: float | None, **facts: Any) -> bytes:
    """:func:`build_status` as compact UTF-8 JSON (what is published)."""
    body = build_status(gateway_id, state, now=now, **facts)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@dataclass(eq=False)
class StatusReporter:
    """Commits the retained status to the outbox (latest wins) and says when it did.

    Attributes
    ----------
    outbox
        Where statuses wait for the broker like everything else (lowest priority).
    gateway_id, topic
        Whose status, and its retained topic.
    devices, transmission, health
        Called for the facts of each status; a failure leaves them out, never the status
        (``health``, the host facts of issue #14, is set by the app on its publisher's
        reporter).
    clock, connected_at
        UTC POSIX seconds now, and when the current connection began (None: not connected).
    sent, last_error
        Statuses committed, and the last failure to build or store one.
    """

    outbox: Outbox
    gateway_id: str
    topic: str
    _: KW_ONLY
    devices: Callable[[], Mapping[str, Any]] | None
    transmission: Callable[[], Mapping[str, Any]]
    clock: Callable[[], float]
    connected_at: Callable[[], float | None] = lambda: None
    health: Callable[[], Mapping[str, Any]] | None = None
    sent: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)

    def will(self, connected_at: float) -> bytes:
        """The Last Will of a connection begun at ``connected_at``: "offline" with no time
        (the broker publishes it when it loses us, which nobody knows at CONNECT)."""
        return status_payload(
            self.gateway_id, "offline", now=None, connected_at=connected_at, last_will=True
        )

    def post(self, state: str) -> int | None:
        """Commit a status (superseding a waiting one); its row id, None if not stored."""
        now, since = self.clock(), self.connected_at()
        try:
            body = build_status(
                self.gateway_id,
                state,
                now=now,
                devices=self._facts(self.devices),
                transmission=self._facts(self.transmission),
                connected_at=since,
                health=self._facts(self.health),
            )
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            self.last_error = f"status message could not be built: {exc!r}"
            log.exception("status message could not be built")
            body = build_status(self.gateway_id, state, now=now, connected_at=since)
        try:
            msg = self.outbox.put(
                "status", self.gateway_id, self.topic, body, retain=True, replace=True
            )
        except Exception as exc:  # a full disk must not stop the publisher
            self.last_error = f"status could not be stored: {exc!r}"
            log.exception("status could not be stored in the outbox")
            return None
        self.sent += 1
        return msg.row_id

    def _facts(self, source: Callable[[], Mapping[str, Any]] | None) -> dict[str, Any]:
        if source is None:
            return {}
        try:
            return dict(source())
        except Exception as exc:
            self.last_error = f"status facts failed: {exc!r}"
            log.exception("status facts failed")
            return {}
