"""The running gateway: where configuration becomes parts, and the asyncio lifetime.

Composition happens here and only here: the pydantic configuration is turned into
small frozen settings objects (:class:`~drivers.patch_session.PatchSettings`,
:class:`~gateway.pipeline.PipelineSettings`, ...) and the parts are built once:

    driver ─► DeviceChannel ─► DevicePipeline ─► outbox ─► Publisher ─► broker
                 │                   └─ live chunks ──────────┘ (QoS 0)
                 └─► RecordingStore (full recording), gap ledger, study facts

Each device runs under its own supervisor task: an exception in one driver (a bug; link
errors are handled inside the driver) is logged and the driver restarted with backoff;
it never stops another device or the gateway. Only ``stop`` (SIGTERM) ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.backoff import backoff_s
from core.events import StreamPosition
from core.tasks import stop_if_cancelled
from drivers import Driver
from drivers.ble_adapter import AdapterHealth, BleAdapter, bluez_power_cycle
from dsp.episodes import RhythmLimits
from gateway.acks import receive_ack
from gateway.channel import DeviceChannel
from gateway.config import CartSerialDevice, GatewayConfig, PatchDevice, PolarPmdDevice
from gateway.continuity import ContinuityStore, missing_from_ledger, refine_with_recording
from gateway.health import HostHealth, device_health
from gateway.mqtt import Publisher, PublisherError
from gateway.mqtt.codec import Publish
from gateway.mqtt.tls_files import TlsFiles
from gateway.outbox import Outbox
from gateway.payloads import build_live_payload, build_strip_body, build_study_body, topic
from gateway.pipeline import DevicePipeline, LiveChunk, PipelineOutput, PipelineSettings
from gateway.recording import RecordingStore, fsync_all
from gateway.remote_config import RemoteConfig, not_up
from gateway.status import device_facts
from gateway.systemd_notify import systemd_service
from gateway.upload import UploadSettings
from gateway.upload_io import Uploader
from gateway.upload_rate import KindLimit, TokenBucket

__all__ = ["Gateway", "make_driver", "pipeline_settings", "run_gateway"]

log = logging.getLogger(__name__)

DeviceConfig = PolarPmdDevice | PatchDevice | CartSerialDevice
_RESTART_DELAYS_S = (1.0, 60.0)  # a driver that crashed is restarted after this backoff
_STOP_TIMEOUT_S = 10.0  # how long stopping waits for each device task to end


def pipeline_settings(cfg: GatewayConfig, dev: DeviceConfig) -> PipelineSettings:
    """The pipeline's settings for one device, from the configuration."""
    d, s, e, a = cfg.dsp, cfg.strips, cfg.events, cfg.auto_events
    return PipelineSettings(
        band=d.band,
        mains_hz=d.mains_hz,
        rhythm=RhythmLimits(brady_bpm=d.brady_bpm, tachy_bpm=d.tachy_bpm, pause_s=d.pause_s),
        strip_period_s=s.period_s,
        strip_duration_s=s.duration_s,
        event_pre_s=e.pre_s,
        event_post_s=e.post_s,
        live_enabled=cfg.live.enabled,
        live_block_s=cfg.live.block_s,
        backfill_wait_s=dev.backfill_wait_s if isinstance(dev, PatchDevice) else 0.0,
        auto_enabled=a.enabled and dev.kind in a.device_kinds,
        auto_pre_s=a.pre_s,
        auto_post_s=a.post_s,
        auto_max_per_day=a.max_per_day,
        auto_merge_s=a.merge_s,
        auto_min_duration_s=tuple(a.min_duration_s.items()),
    )


def make_driver(
    dev: DeviceConfig,
    sink: DeviceChannel,
    *,
    ble_backend: Any,
    adapter: BleAdapter,
    resume: StreamPosition | None = None,
    time_scale: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> Driver:
    """The driver for one configured device, going on from ``resume`` (where its stream
    stood when the gateway last ran). Drivers import nothing of the gateway.
    ``time_scale``: how much faster than real time a simulated BLE device runs (1 for real
    devices); ``clock``: UTC now for a BLE device's clock tracking (the gateway's)."""
    if isinstance(dev, PolarPmdDevice | PatchDevice):
        from drivers.ble_driver import ble_driver
        from drivers.patch_session import PatchSettings
        from drivers.polar_session import PolarSettings

        common = {
            "id": dev.id,
            "address": dev.address,
            "connect_timeout_s": dev.connect_timeout_s,
            "silence_timeout_s": dev.silence_timeout_s,
            "lead": dev.lead,
            "time_scale": time_scale,
        }
        settings: PatchSettings | PolarSettings = (
            PolarSettings(**common, fs=dev.fs)
            if isinstance(dev, PolarPmdDevice)
            else PatchSettings(**common)
        )
        return ble_driver(
            settings, sink, resume=resume, backend=ble_backend, adapter=adapter, clock=clock
        )
    from drivers.cart_driver import CartDriver, CartSettings

    cart = CartSettings(dev.id, dev.port, dev.baudrate, dev.silence_timeout_s)
    return CartDriver(cart, sink, resume=resume)


# --- full disclosure (issue #13) ---------------------------------------------------------------
def make_uploader(
    cfg: GatewayConfig, outbox: Outbox, clock: Callable[[], float]
) -> Uploader | None:
    """The record uploader, when recording and upload are both on."""
    up = cfg.upload
    if not (up.enabled and cfg.recording.enabled):
        return None
    settings = UploadSettings(up.chunk_kb * 1024, up.settle_s, up.quiet_s, up.resend_after_s)
    return Uploader(
        cfg.gateway.state_dir / "recordings",
        cfg.gateway.state_dir / "upload.sqlite3",
        outbox,
        gateway_id=cfg.gateway.id,
        topic_prefix=cfg.mqtt.topic_prefix,
        settings=settings,
        file_s=cfg.recording.file_s,
        queued_chunks=up.queued_chunks,
        scan_s=up.scan_s,
        clock=clock,
    )


def upload_facts(
    uploader: Uploader | None, dev_id: str, rec: RecordingStore | None
) -> dict[str, Any] | None:
    """The status's ``study`` block: hours recorded, records sent and confirmed."""
    if uploader is None:
        return None
    alarm = rec.quota_alarm if rec is not None else None
    return {**uploader.facts(dev_id), "quota_alarm": alarm}


def record_limits(cfg: GatewayConfig) -> dict[str, KindLimit]:
    """Records' share of the in-flight window and their byte-rate cap."""
    up = cfg.upload
    rate = up.rate_kb_s * 1000.0
    bucket = TokenBucket(rate, burst=max(rate, 2 * up.chunk_kb * 1024)) if rate else None
    return {"record": KindLimit(up.window_share, bucket)}


async def _bounded(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for cancelled tasks, at most ``_STOP_TIMEOUT_S``: a driver stuck in a library
    must not keep the gateway from stopping (or from swapping its devices)."""
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
    for t in stuck:
        log.error("%s did not stop within %g s; going on without it", t.get_name(), _STOP_TIMEOUT_S)


class _DeviceLifecycle:
    """Start, stop and swap a :class:`Gateway`'s devices (split out of ``_run_devices`` for
    the remote configuration, issue #14: a new configuration stops the devices as at
    shutdown — flushed, positions saved, study records out — and starts the new ones)."""

    channels: dict[str, DeviceChannel]
    drivers: dict[str, Driver]
    restarts: dict[str, int]
    cfg: GatewayConfig
    _build_devices: Callable[[], None]  # the Gateway's (below)
    _save_positions: Callable[[], None]
    _put_study: Callable[..., None]

    async def _keep_running(self, dev_id: str, driver: Driver) -> None:
        """Run one driver; if it ever raises (a bug), log, wait and run it again. A driver
        that ends, or raises, while its task is being stopped was stopped (a library on
        the way swallowed the cancellation or turned it into an error): no restart."""
        rng = random.Random()
        while True:
            try:
                await driver.run()
                stop_if_cancelled()
                log.error("%s: driver returned; starting it again", dev_id)
            except Exception:
                stop_if_cancelled()
                log.exception("%s: driver failed; starting it again", dev_id)
            self.restarts[dev_id] += 1
            await asyncio.sleep(backoff_s(self.restarts[dev_id], _RESTART_DELAYS_S, rng))

    def _start_devices(self) -> None:
        self.channels, self.drivers, self.restarts = {}, {}, {}
        self._build_devices()
        self._device_tasks = [
            asyncio.create_task(self._keep_running(d, drv), name=f"device:{d}")
            for d, drv in self.drivers.items()
        ]

    async def _stop_devices(self, *, final: bool) -> None:
        for t in self._device_tasks:
            t.cancel()
        await _bounded(self._device_tasks)
        for ch in self.channels.values():
            ch.flush()
        self._save_positions()
        self._put_study(final=final)

    async def _reconfigure(self, cfg: GatewayConfig) -> None:
        """Stop the devices as at shutdown (flushed, positions saved), start the new ones."""
        await self._stop_devices(final=False)
        self.cfg = cfg
        self._start_devices()


class Gateway(_DeviceLifecycle):
    """All devices of one configuration, their pipelines, the outbox and the publisher.

    Parameters
    ----------
    cfg
        Validated configuration.
    ble_backend
        bleak backend class for BLE devices (None: the platform's, BlueZ on a Pi;
        the demo passes the bumble-backed simulator's).
    adapter_reset
        How to reset a stuck Bluetooth adapter (default: power-cycle it over BlueZ's
        D-Bus when ``ble_backend`` is None; otherwise never).
    clock
        UTC POSIX seconds now (tests may pass a fake).
    device_time_scale
        How much faster than real time simulated BLE devices run (the demo replaying a
        record faster); 1 for real devices.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        ble_backend: Any = None,
        adapter_reset: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
        device_time_scale: float = 1.0,
        remote_up_timeout_s: float = 60.0,
    ) -> None:
        self.cfg = cfg
        self._time_scale = device_time_scale
        self.clock = clock
        self._ble_backend = ble_backend
        if adapter_reset is None and ble_backend is None:
            adapter_reset = functools.partial(bluez_power_cycle, cfg.gateway.ble_adapter)
        if cfg.gateway.ble_reset_after_failures == 0:
            adapter_reset = None
        health = AdapterHealth(failures_to_reset=max(cfg.gateway.ble_reset_after_failures, 1))
        self.ble_adapter = BleAdapter(adapter_reset, health)
        self.channels: dict[str, DeviceChannel] = {}
        self.drivers: dict[str, Driver] = {}
        self.restarts: dict[str, int] = {}
        self.continuity = ContinuityStore(cfg.gateway.state_dir / "continuity")
        self.outbox: Outbox | None = None
        self.publisher: Publisher | None = None
        self.uploader: Uploader | None = None  # full disclosure to the center (issue #13)
        self._study_since = clock()
        self.started = asyncio.Event()
        #: Messages left in the outbox when :meth:`run` returned (kept for the next start).
        self.outbox_pending_at_exit = 0
        self.remote = RemoteConfig(cfg, up_timeout_s=remote_up_timeout_s, clock=clock)  # (#14)

    # --- parts -------------------------------------------------------------------------------
    def _topic(self, device_id: str, kind: str) -> str:
        return topic(self.cfg.mqtt.topic_prefix, self.cfg.gateway.id, device_id, kind)

    def _build_devices(self) -> None:
        cfg = self.cfg
        for dev in cfg.devices:
            position, study = self.continuity.load(dev.id)
            records = cfg.gateway.state_dir / "recordings" / dev.id
            if cfg.recording.enabled:
                position, study = refine_with_recording(position, study, records)
            study = missing_from_ledger(
                study, cfg.gateway.state_dir / "study" / f"{dev.id}.gaps.jsonl"
            )
            recording = None
            if cfg.recording.enabled:
                recording = RecordingStore(
                    records,
                    dev.id,
                    file_s=cfg.recording.file_s,
                    max_mb=cfg.recording.max_mb,
                    sync_s=cfg.recording.sync_s,
                )
                if self.uploader is not None:  # the quota deletes only confirmed records
                    recording.deletable = functools.partial(self.uploader.deletable, dev.id)
            ch = DeviceChannel(
                dev.id,
                DevicePipeline(dev.id, pipeline_settings(cfg, dev)),
                self._emit,
                study_dir=cfg.gateway.state_dir / "study",
                recording=recording,
            )
            ch.study = study
            self.channels[dev.id] = ch
            self.drivers[dev.id] = make_driver(
                dev,
                ch,
                ble_backend=self._ble_backend,
                adapter=self.ble_adapter,
                resume=position,
                time_scale=self._time_scale,
                clock=self.clock,
            )
            self.restarts[dev.id] = 0

    # --- outputs -----------------------------------------------------------------------------
    def _emit(self, device_id: str, out: PipelineOutput) -> None:
        if isinstance(out, LiveChunk):
            if self.publisher is not None:
                gw = self.cfg.gateway.id
                payload = build_live_payload(out.block, gateway_id=gw, hr_bpm=out.hr_bpm)
                self.publisher.publish_live(self._topic(device_id, "live"), payload)
            return
        if self.outbox is None:
            raise RuntimeError("no outbox: the gateway is not running")
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
        if out.kind == "event":
            self.channels[device_id].acks.sent_event(msg.msg_id, self.clock())
        log.info(
            "%s: %s stored (seq %s, %.1f s, %s)",
            device_id,
            out.kind,
            msg.seq,
            out.block.duration,
            out.trigger.type,
        )
        if self.publisher is not None:
            self.publisher.wake()

    def _on_ack(self, packet: Publish) -> None:
        """The center acknowledged a strip or event of one of our devices."""
        ch = self.channels.get(packet.topic.split("/")[-2])
        receive_ack(ch.acks if ch is not None else None, packet.topic, packet.payload)

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
                acknowledgements=ch.acks.take_recent(),
                waiting=ch.acks.facts(now),
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

    def status_devices(self) -> dict[str, Any]:
        """Per-device facts for the retained status message."""
        now = self.clock()
        return {
            dev_id: {
                **device_health(ch.last_event, now),  # battery, contact, RSSI (#14)
                **device_facts(
                    ch,
                    {**self.drivers[dev_id].stats(), "restarts": self.restarts[dev_id]},
                    now,
                    study=upload_facts(self.uploader, dev_id, ch.recording),
                ),
            }
            for dev_id, ch in self.channels.items()
        }

    # --- background work ------------------------------------------------------------------------
    async def _study_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.study.period_s)
            try:
                self._put_study()
            except Exception:  # a full disk must not stop the gateway; retried next period
                log.exception("could not store the study records")

    def _save_positions(self) -> None:
        """Each device's stream position and study facts, for the next start."""
        for dev_id, ch in self.channels.items():
            try:
                self.continuity.save(dev_id, self.drivers[dev_id].position(), ch.study)
            except OSError:
                ch.counters.add("errors")
                log.exception("%s: could not save the stream position", dev_id)

    async def _sync_loop(self) -> None:
        """fsync the recordings every ``sync_s``, in a worker thread (never on the loop),
        and save where each stream stands."""
        while True:
            await asyncio.sleep(self.cfg.recording.sync_s)
            self._save_positions()
            for ch in self.channels.values():
                if ch.recording is None:
                    continue
                try:
                    await asyncio.to_thread(fsync_all, ch.recording.take_unsynced())
                except OSError:
                    ch.counters.add("recording_errors")
                    log.exception("%s: could not sync the recording", ch.device_id)

    # --- lifetime -------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop drivers, flush pipelines and drain the outbox."""
        self.cfg = cfg = self.remote.effective()  # the center's applied configuration (#14)
        cfg.gateway.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.outbox = Outbox(
            cfg.gateway.state_dir / "outbox.sqlite3",
            max_bytes=int(cfg.gateway.outbox_max_mb * 1e6),
        )
        self.uploader = make_uploader(cfg, self.outbox, self.clock)
        try:
            async with Publisher(
                cfg.mqtt,
                cfg.gateway.id,
                self.outbox,
                status_devices=self.status_devices,
                live_max_rate_hz=cfg.live.max_rate_hz,
                limits=record_limits(cfg),
            ) as pub:
                self.publisher = pub
                prefix, gw = cfg.mqtt.topic_prefix, cfg.gateway.id
                pub.subscribe(f"{prefix}/{gw}/+/ack", self._on_ack)
                pub.subscribe(self.remote.topic, self.remote.on_publish)  # (issue #14)
                pub.status.health = HostHealth.for_config(
                    cfg, config_version=self.remote.status, clock=self.clock
                ).facts
                self.remote.notify = lambda: (pub.status.post("online"), pub.wake())
                if self.uploader is not None:
                    pub.subscribe(self.uploader.ack_filter, self.uploader.on_message)
                    self.uploader.wake = pub.wake
                await self._run_devices(stop)
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
            if self.uploader is not None:
                self.uploader.close()

    async def _run_devices(self, stop: asyncio.Event) -> None:
        self._start_devices()
        tasks = [
            asyncio.create_task(self._study_loop(), name="study"),
            asyncio.create_task(self._sync_loop(), name="recording-sync"),
            asyncio.create_task(  # (issue #14) the center's configuration, applied or rolled back
                self.remote.run(self._reconfigure, lambda: not_up(self.channels)),
                name="remote-config",
            ),
            asyncio.create_task(  # (issue #14) a renewed certificate from the next connection on
                TlsFiles(self.cfg.mqtt).watch(lambda: self.publisher and self.publisher.client),
                name="tls-files",
            ),
        ]
        if self.uploader is not None:
            tasks.append(asyncio.create_task(self.uploader.run(), name="record-upload"))
        self.started.set()
        log.info(
            "gateway %s running: %d device(s), broker %s",
            self.cfg.gateway.id,
            len(self.drivers),
            self.cfg.mqtt.url,
        )
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await _bounded(tasks)
            await self._stop_devices(final=True)


async def run_gateway(cfg: GatewayConfig) -> int:
    """``ecg-gateway run``: run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(cfg)
    # What was built at start lives as long as the process: out of the cyclic collector's
    # reach, a full collection no longer scans it inside some step (about 9 ms after the
    # imports alone on the development machine; BENCHMARKS.md, pipeline step times).
    gc.collect()
    gc.freeze()
    try:
        # READY=1 once devices, outbox and publisher are up; STOPPING=1 at the signal; the
        # watchdog fed from this event loop, so a frozen loop gets the service restarted
        async with systemd_service(ready=gateway.started, stopping=stop):
            await gateway.run(stop)
    except PublisherError as exc:
        # insecure key file, unreadable password file, bad TLS material: refuse to run
        log.error("refusing to start: %s", exc)
        return 78  # EX_CONFIG, as for a bad configuration
    return 0
