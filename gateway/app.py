"""The running gateway: drivers in, pipelines in the middle, outbox and publisher out.

This is the asyncio shell. Each device gets a driver task and a
:class:`DeviceChannel` (its sink), which runs the pure
:class:`~gateway.pipeline.DevicePipeline` and hands the results on: live ECG
straight to the publisher (QoS 0, best effort), strips and events into the
durable outbox first, from which the publisher delivers them (QoS 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.ble_adapter import AdapterHealth, BleAdapter, bluez_power_cycle
from drivers.events import DeviceEvent, Gap
from dsp.block import SampleBlock
from gateway.config import CartSerialDevice, GatewayConfig, PatchDevice, PolarPmdDevice
from gateway.outbox import Outbox
from gateway.payloads import (
    StudyFacts,
    build_live_payload,
    build_strip_body,
    build_study_body,
    iso,
    topic,
)
from gateway.pipeline import DevicePipeline, LiveChunk, PipelineOutput, StripReady
from gateway.publisher import Publisher, PublisherError
from gateway.recording import RecordingStore

__all__ = ["DeviceChannel", "Gateway", "run_gateway"]

log = logging.getLogger(__name__)


@dataclass
class ChannelStats:
    samples: int = 0
    blocks: int = 0
    live_messages: int = 0
    strips: int = 0
    events: int = 0
    gaps: int = 0
    gap_samples: int = 0
    button_presses: int = 0
    errors: int = 0
    recording_errors: int = 0
    last_event: dict[str, Any] = field(default_factory=dict)


class DeviceChannel:
    """The sink a driver delivers to: runs the device's pipeline and passes its outputs on.

    Exceptions never reach the driver: a failing output is logged and counted.
    """

    def __init__(
        self,
        device_id: str,
        pipeline: DevicePipeline,
        emit: Callable[[str, PipelineOutput], None],
        study_dir: Path | None = None,
        recording: RecordingStore | None = None,
    ) -> None:
        self.device_id = device_id
        self.study_dir = study_dir
        self.recording = recording
        self.gap_ledger: deque[dict[str, Any]] = deque(maxlen=50)
        self.study = StudyFacts()
        self.study_gaps: list[dict[str, Any]] = []  # ledger entries not yet in a study message
        self.pipeline = pipeline
        self._emit = emit
        self.stats = ChannelStats()

    def _deliver(self, outputs: list[PipelineOutput]) -> None:
        for out in outputs:
            try:
                self._emit(self.device_id, out)
            except Exception:
                self.stats.errors += 1
                log.exception("%s: could not hand on %s", self.device_id, type(out).__name__)
            else:
                if isinstance(out, LiveChunk):
                    self.stats.live_messages += 1
                elif out.kind == "event":
                    self.stats.events += 1
                else:
                    self.stats.strips += 1

    def on_block(self, block: SampleBlock) -> None:
        self.stats.blocks += 1
        self.stats.samples += block.n
        self.study.add_block(block.seq, block.end_seq, block.fs, block.start, block.end)
        self._record(block)
        try:
            outputs = self.pipeline.on_block(block)
        except Exception:
            self.stats.errors += 1
            log.exception("%s: pipeline failed on block seq %d", self.device_id, block.seq)
            return
        self._deliver(outputs)

    def _record(self, block: SampleBlock) -> None:
        """Into the device's full recording (a full disk never stops the stream)."""
        if self.recording is None:
            return
        try:
            self.recording.write(block)
        except (OSError, ValueError):
            self.stats.recording_errors += 1
            if self.stats.recording_errors % 1000 == 1:  # the first, then every 1000th
                log.exception(
                    "%s: could not record block seq %d (%d recording errors)",
                    self.device_id,
                    block.seq,
                    self.stats.recording_errors,
                )

    def on_event(self, event: DeviceEvent) -> None:
        if event.kind == "button":
            self.stats.button_presses += 1
            log.warning(
                "%s: SYMPTOM BUTTON pressed (press %s); event strip follows",
                self.device_id,
                event.data.get("press_id"),
            )
        elif event.kind in ("connected", "disconnected", "stage", "lead_off", "error"):
            log.info("%s: %s %s", self.device_id, event.kind, event.data)
        elif event.kind == "rr_gap":  # Heart Rate service beats never heard
            self._record_gap({"kind": "rr", **event.data, "final": True})
        self.stats.last_event[event.kind] = {"time": event.time, **event.data}
        try:
            outputs = self.pipeline.on_event(event)
        except Exception:
            self.stats.errors += 1
            log.exception("%s: pipeline failed on %s event", self.device_id, event.kind)
            return
        self._deliver(outputs)

    def on_gap(self, gap: Gap) -> None:
        self.stats.gaps += 1
        self.stats.gap_samples += gap.n_samples
        if gap.final:
            self.study.missing += gap.n_samples
        entry = {
            "first_seq": gap.first_seq,
            "end_seq": gap.end_seq,
            "n_samples": gap.n_samples,
            "start": iso(gap.start),
            "end": iso(gap.end),
            "reason": gap.reason,
            "final": gap.final,
        }
        self._record_gap(entry)
        log.warning(
            "%s: %d samples missing (seq %d..%d, %s)",
            self.device_id,
            gap.n_samples,
            gap.first_seq,
            gap.end_seq,
            gap.reason or "no reason given",
        )
        self._deliver(self.pipeline.on_gap(gap))

    def _record_gap(self, entry: dict[str, Any]) -> None:
        """Into the status ledger and the study record (what the report must show missing)."""
        self.gap_ledger.append(entry)
        self.study_gaps.append(entry)
        if self.study_dir is None:
            return
        try:
            self.study_dir.mkdir(parents=True, exist_ok=True)
            with open(self.study_dir / f"{self.device_id}.gaps.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError:
            self.stats.errors += 1
            log.exception("%s: could not record a gap in the study record", self.device_id)

    def flush(self) -> None:
        self._deliver(self.pipeline.flush())
        if self.recording is not None:
            try:
                self.recording.close()
            except OSError:
                self.stats.recording_errors += 1
                log.exception("%s: could not close the recording", self.device_id)


def _recording_store(cfg: GatewayConfig, device_id: str) -> RecordingStore | None:
    rec = cfg.recording
    if not rec.enabled:
        return None
    return RecordingStore(
        cfg.gateway.state_dir / "recordings" / device_id,
        device_id,
        file_s=rec.file_s,
        max_mb=rec.max_mb,
        sync_s=rec.sync_s,
    )


def _recording_status(ch: DeviceChannel) -> dict[str, Any] | None:
    rec = ch.recording
    if rec is None:
        return None
    return {
        "samples_written": rec.samples_written,
        "records_created": rec.records_created,
        "records_deleted": rec.records_deleted,
        "errors": ch.stats.recording_errors,
    }


def _adapter_reset(cfg: GatewayConfig, ble_backend: Any) -> Callable[[], Any] | None:
    """How to reset the Bluetooth adapter: the simulated world's, or BlueZ over D-Bus."""
    if cfg.gateway.ble_reset_after_failures == 0:
        return None
    world = getattr(ble_backend, "world", None)
    if world is not None:
        return world.reset_adapter
    if ble_backend is not None:
        return None  # some other test backend: nothing to reset
    return functools.partial(bluez_power_cycle, cfg.gateway.ble_adapter)


def make_driver(
    dev: PolarPmdDevice | PatchDevice | CartSerialDevice,
    sink: DeviceChannel,
    ble_backend: Any,
    adapter_lock: asyncio.Lock | None = None,
):
    """The driver object for one configured device."""
    if isinstance(dev, PolarPmdDevice):
        from drivers.ble_patch import PolarPmdDriver

        return PolarPmdDriver(dev, sink, backend=ble_backend, adapter_lock=adapter_lock)
    if isinstance(dev, PatchDevice):
        from drivers.patch_driver import PatchDriver

        return PatchDriver(dev, sink, backend=ble_backend, adapter_lock=adapter_lock)
    from drivers.cart_serial import CartSerialDriver

    return CartSerialDriver(dev, sink)


class Gateway:
    """All devices of one configuration, their pipelines, the outbox and the publisher.

    Parameters
    ----------
    cfg
        Validated configuration.
    ble_backend
        bleak backend class for BLE devices (None: the platform's, BlueZ on a Pi;
        the demo passes the bumble-backed simulator backend).
    clock
        UTC POSIX seconds now (tests may pass a fake).
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        ble_backend: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self._ble_backend = ble_backend
        self.channels: dict[str, DeviceChannel] = {}
        self.drivers: dict[str, Any] = {}
        self.outbox: Outbox | None = None
        self.publisher: Publisher | None = None
        self.ble_adapter: BleAdapter | None = None  # made by run()
        self._study_since = clock()
        self.started = asyncio.Event()
        #: Messages left in the outbox when :meth:`run` returned (kept for the next start).
        self.outbox_pending_at_exit = 0

    # --- outputs ------------------------------------------------------------
    def _topic(self, device_id: str, kind: str) -> str:
        return topic(self.cfg.mqtt.topic_prefix, self.cfg.gateway.id, device_id, kind)

    def _emit(self, device_id: str, out: PipelineOutput) -> None:
        if isinstance(out, LiveChunk):
            if self.publisher is not None:
                payload = build_live_payload(
                    out.block, gateway_id=self.cfg.gateway.id, hr_bpm=out.hr_bpm
                )
                self.publisher.publish_live(self._topic(device_id, "live"), payload)
            return
        assert isinstance(out, StripReady) and self.outbox is not None
        body = build_strip_body(
            out.block,
            gateway_id=self.cfg.gateway.id,
            kind=out.kind,
            trigger=out.trigger,
            facts=out.facts,
            gaps=list(out.gaps),
            created=self.clock(),
        )
        msg = self.outbox.put(out.kind, device_id, self._topic(device_id, out.kind), body)
        log.info(
            "%s: %s stored (seq %s, %.1f s, %s)",
            device_id,
            out.kind,
            msg.seq,
            out.block.duration,
            out.trigger.get("type"),
        )
        if self.publisher is not None:
            self.publisher.wake()

    async def _study_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.study.period_s)
            try:
                self._put_study()
            except Exception:  # a full disk must not stop the gateway; retried next period
                log.exception("could not store the study records")

    def _put_study(self, *, final: bool = False) -> None:
        """One study record per device into the outbox (one transaction)."""
        if self.outbox is None or not self.channels:
            return
        now = self.clock()
        items = []
        for dev_id, ch in self.channels.items():
            body = build_study_body(
                self.cfg.gateway.id,
                dev_id,
                ch.study,
                ch.study_gaps,
                since=self._study_since,
                now=now,
                final=final,
            )
            items.append(("study", dev_id, self._topic(dev_id, "study"), body))
        self.outbox.put_many(items)
        for ch in self.channels.values():
            ch.study_gaps = []
        self._study_since = now
        if self.publisher is not None:
            self.publisher.wake()

    def _ble_adapter(self) -> BleAdapter:
        n = self.cfg.gateway.ble_reset_after_failures
        self.ble_adapter = BleAdapter(
            _adapter_reset(self.cfg, self._ble_backend),
            AdapterHealth(failures_to_reset=max(n, 1)),
        )
        return self.ble_adapter

    def status_devices(self) -> dict[str, Any]:
        """Per-device facts for the retained status message."""
        out: dict[str, Any] = {}
        for dev_id, ch in self.channels.items():
            drv = self.drivers.get(dev_id)
            drv_stats = getattr(drv, "stats", None)
            if hasattr(drv_stats, "as_dict"):
                drv_stats = drv_stats.as_dict()
            elif drv_stats is not None and not isinstance(drv_stats, dict):
                drv_stats = getattr(drv_stats, "__dict__", {})
            out[dev_id] = {
                "samples": ch.stats.samples,
                "gaps": ch.stats.gaps,
                "gap_samples": ch.stats.gap_samples,
                "heart_rate_bpm": ch.pipeline.heart_rate_bpm,
                "recent_gaps": list(ch.gap_ledger)[-10:],
                "recording": _recording_status(ch),
                "driver": dict(drv_stats or {}),
            }
        return out

    # --- lifetime -------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop drivers, flush pipelines and drain the outbox."""
        cfg = self.cfg
        cfg.gateway.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            cfg.gateway.state_dir / "outbox.sqlite3",
            max_bytes=int(cfg.gateway.outbox_max_mb * 1e6),
        )
        try:
            async with Publisher(
                cfg.mqtt,
                cfg.gateway.id,
                self.outbox,
                status_devices=self.status_devices,
                live_max_rate_hz=cfg.live.max_rate_hz,
            ) as pub:
                self.publisher = pub
                adapter_lock = self._ble_adapter()  # one adapter: scans never overlap
                for dev in cfg.devices:
                    ch = DeviceChannel(
                        dev.id,
                        DevicePipeline(dev.id, cfg, getattr(dev, "backfill_wait_s", 0.0)),
                        self._emit,
                        study_dir=cfg.gateway.state_dir / "study",
                        recording=_recording_store(cfg, dev.id),
                    )
                    self.channels[dev.id] = ch
                    self.drivers[dev.id] = make_driver(dev, ch, self._ble_backend, adapter_lock)
                tasks = [
                    asyncio.create_task(drv.run(), name=f"driver:{dev_id}")
                    for dev_id, drv in self.drivers.items()
                ]
                study = asyncio.create_task(self._study_loop(), name="study")
                self.started.set()
                log.info(
                    "gateway %s running: %d device(s), broker %s",
                    cfg.gateway.id,
                    len(tasks),
                    cfg.mqtt.url,
                )
                stop_wait = asyncio.create_task(stop.wait(), name="stop")
                try:
                    await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in tasks:
                        t.cancel()
                    stop_wait.cancel()
                    results = await asyncio.gather(*tasks, return_exceptions=True)
                    for t, r in zip(tasks, results, strict=True):
                        if isinstance(r, BaseException) and not isinstance(
                            r, asyncio.CancelledError
                        ):
                            log.error("%s ended with %r", t.get_name(), r)
                study.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await study
                for ch in self.channels.values():
                    ch.flush()
                self._put_study(final=True)
                drained = await pub.wait_drained(timeout=10.0)
                if not drained:
                    log.warning(
                        "%d message(s) still in the outbox; they are kept and sent at next start",
                        self.outbox.pending(),
                    )
        finally:
            self.publisher = None
            self.outbox_pending_at_exit = self.outbox.pending()
            self.outbox.close()


async def run_gateway(cfg: GatewayConfig) -> int:
    """``ecg-gateway run``: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await Gateway(cfg).run(stop)
    except PublisherError as exc:
        # insecure key file, unreadable password file, bad TLS material: refuse to run
        log.error("refusing to start: %s", exc)
        return 78  # EX_CONFIG, as for a bad configuration
    return 0
