"""``ecg-gateway demo``: the whole path on one machine, with real protocols.

- a simulated chest patch, a bumble GATT server on a virtual Bluetooth LE link,
  reached by the gateway's own bleak driver through a bumble-backed bleak backend,
  speaking our patch profile (docs/protocols/patch-gatt.md: ECG at 250 Hz with
  sample numbers, memory and backfill, device time, symptom button);
- a simulated stress-test cart writing the framed serial protocol
  (docs/protocols/cart-serial.md, 12 leads at 500 Hz) to a real pseudo-terminal
  the gateway's serial driver reads;
- the gateway itself (pipelines, durable outbox, MQTT publisher);
- an MQTT broker: the one given with ``--broker``, else an embedded one on a free
  loopback port (mosquitto when installed, else a pure-Python broker; set
  ``ECG_GATEWAY_DEMO_BROKER=python`` or ``=mosquitto`` to choose);
- the monitor, subscribed like a monitoring center, printing what arrives and
  saving strips as PNG on ECG paper with ``--out``.

About 5 s after the patch starts streaming its Bluetooth link drops (the patch
keeps recording and the gateway backfills what it missed: the summary shows no
missing samples), and 5 s later the patient presses the patch button. At the end
a summary lists messages per topic, samples sent vs received, and gaps; the
exit code is 0 only when live ECG from both devices, at least one strip per
device, the post-symptom event and the online and offline status all reached the
monitor and no patch sample is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import GatewayConfig, parse_config
from gateway.monitor import Monitor
from sim.bumble_backend import SimBleWorld
from sim.cart import SimCart
from sim.embedded_broker import EmbeddedBroker
from sim.patch import SimPatch

__all__ = ["DemoOptions", "DemoResult", "demo", "demo_config", "run_demo"]

log = logging.getLogger(__name__)

GATEWAY_ID = "demo-gw"
PATCH_ID = "patch-1"
CART_ID = "cart-1"
BUTTON_AFTER_S = 10.0
STRIP_S = 10.0
EVENT_PRE_S = 10.0
EVENT_POST_S = 10.0


def demo_config(
    broker_url: str, state_dir: Path, patch_address: str, cart_port: str
) -> GatewayConfig:
    """The gateway configuration the demo runs (periodic strips every 60 s, 10 s long)."""
    return parse_config(
        {
            "gateway": {"id": GATEWAY_ID, "state_dir": str(state_dir)},
            "mqtt": {
                "url": broker_url,
                "insecure": broker_url.startswith("mqtt://"),
                "keepalive_s": 10,
            },
            "devices": [
                {"kind": "patch", "id": PATCH_ID, "address": patch_address},
                {"kind": "cart_serial", "id": CART_ID, "port": cart_port},
            ],
            "strips": {"period_s": 60.0, "duration_s": STRIP_S},
            "events": {"pre_s": EVENT_PRE_S, "post_s": EVENT_POST_S},
            "live": {"block_s": 1.0},
        },
        source="<demo>",
    )


@dataclass
class DemoResult:
    """What the demo measured; ``ok`` decides the exit code."""

    ok: bool
    checks: dict[str, bool]
    monitor: dict[str, Any]
    sent: dict[str, int]
    received: dict[str, int]
    gaps: dict[str, int]
    outbox_pending: int
    broker: str
    out_dir: Path | None
    center: dict[str, int] | None = None
    """Rows the center stored, by kind (event, strip); None without a center."""
    lines: list[str] = field(default_factory=list)


async def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def demo_from_args(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """:func:`run_demo` with the options of ``ecg-gateway demo`` (see ``gateway.cli``)."""
    return run_demo(
        args.seconds,
        args.broker,
        args.out,
        hold=args.hold,
        record=args.patch_record,
        record_from_s=args.patch_record_from,
        speed=args.speed,
    )


async def run_demo(
    seconds: float = 30.0,
    broker_url: str | None = None,
    out_dir: Path | None = None,
    *,
    hold: bool = False,
    record: Path | None = None,
    record_from_s: float = 0.0,
    speed: float = 1.0,
    echo: Callable[[str], None] = print,
) -> int:
    """Run the demo for ``seconds`` seconds; print the summary; 0 when everything arrived.

    With ``hold`` the chain keeps running after the summary (the gateway restarted on its
    state, the center's console up) until Ctrl-C."""
    opts = DemoOptions(
        seconds,
        broker_url,
        out_dir,
        hold=hold,
        record=record,
        record_from_s=record_from_s,
        speed=speed,
    )
    result = await demo(opts, echo=echo)
    return 0 if result.ok else 1


@dataclass
class DemoOptions:
    """What to run: see ``ecg-gateway demo --help``."""

    seconds: float = 30.0
    broker_url: str | None = None
    out_dir: Path | None = None
    hold: bool = False
    record: Path | None = None
    """A WFDB record the patch replays instead of its synthetic ECG (e.g. MIT-BIH 100)."""
    record_from_s: float = 0.0
    """Where in ``record`` the replay starts, seconds."""
    speed: float = 1.0
    """How much faster than real time the patch's signal runs (with ``record``)."""
    center: bool = True
    """Run the monitoring center in-process (SQLite, console on a loopback port)."""


async def demo(
    opts: DemoOptions | float = 30.0,
    broker_url: str | None = None,
    out_dir: Path | None = None,
    *,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo and return what it measured (used by ``run_demo`` and the tests)."""
    if not isinstance(opts, DemoOptions):
        opts = DemoOptions(float(opts), broker_url, out_dir)
    out_dir = Path(opts.out_dir) if opts.out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecg-demo-")))
        state_dir = work / "gateway"
        broker_url = opts.broker_url
        if broker_url is None:
            prefer = os.environ.get("ECG_GATEWAY_DEMO_BROKER", "auto")
            broker = await stack.enter_async_context(EmbeddedBroker(prefer=prefer))
            broker_url = broker.url
            echo(f"demo: embedded {broker.kind} broker on {broker_url}")
        else:
            echo(f"demo: using broker {broker_url}")
        center = None
        if opts.center:
            center = await _start_center(stack, broker_url, out_dir or work, echo)

        world = SimBleWorld()
        source = _replay(opts, echo)
        patch = await stack.enter_async_context(
            SimPatch(world, hr_bpm=72.0, seed=1, speed=opts.speed, source=source)
        )
        cart = SimCart(stage_s=max(opts.seconds / 3.0, 8.0), seed=2)
        await cart.start()
        stack.push_async_callback(cart.stop)
        echo(f"demo: simulated patch {patch.address} (BLE, bumble); cart on {cart.port} (pty)")

        cfg = demo_config(broker_url, state_dir, patch.address, cart.port)
        monitor = Monitor(broker_url, out_dir=out_dir, prefix=cfg.mqtt.topic_prefix, echo=echo)
        await asyncio.to_thread(monitor.start)
        stack.callback(monitor.stop)

        def new_gateway() -> Gateway:
            return Gateway(
                cfg,
                ble_backend=world.backend(),
                adapter_reset=world.reset_adapter,
                device_time_scale=opts.speed,
            )

        gateway = new_gateway()
        await _scenario(gateway, patch, opts.seconds, echo)
        # The retained "offline" status is the last thing the gateway publishes.
        await asyncio.to_thread(
            monitor.wait_for,
            lambda s: _statuses(s).endswith("offline"),
            5.0,
        )
        in_center = await _center_counts(center, wait_for_event=True)
        result = _judge(
            monitor.summary(),
            {PATCH_ID: patch.next_seq, CART_ID: cart.samples_sent},
            gateway,
            broker_url,
            out_dir,
            in_center,
            center.url if center else None,
        )
        if out_dir is not None and (state_dir / "recordings").is_dir():
            # the full recordings (WFDB) would vanish with the demo's state directory
            shutil.copytree(state_dir / "recordings", out_dir / "recordings", dirs_exist_ok=True)
            echo(f"demo: full recordings (WFDB) copied to {out_dir / 'recordings'}")
        if opts.hold:
            monitor.echo = lambda _line: None  # the console shows what arrives from now on
        for line in result.lines:
            echo(line)
        if opts.hold:
            await _hold(new_gateway(), center, echo)
    return result


def _replay(opts: DemoOptions, echo: Callable[[str], None]) -> object | None:
    if opts.record is None:
        return None
    from sim.replay import RecordReplay

    source = RecordReplay(opts.record, start_s=opts.record_from_s)
    echo(
        f"demo: the patch replays {source.name} ({source.duration_s / 60:.1f} min, looped) "
        f"from {opts.record_from_s:g} s at {opts.speed:g}x real time"
    )
    return source


async def _start_center(
    stack: contextlib.AsyncExitStack, broker_url: str, where: Path, echo: Callable[[str], None]
) -> Any:
    """The monitoring center in this process: SQLite in ``where``, console on loopback."""
    try:
        from center.app import Center, create_demo_user
        from center.app import demo_config as center_config
    except ImportError as exc:  # the [center] extra is missing: run without it
        echo(f"demo: no monitoring center ({exc}); pip install -e '.[demo]' includes it")
        return None
    db = where / "center.db"
    center = await stack.enter_async_context(Center(center_config(db, broker_url)))
    password = await asyncio.to_thread(_quiet_demo_user, create_demo_user, center.engine)
    echo(f"demo: monitoring center (SQLite {db}); console {center.url}")
    echo(f"demo: console login: user 'demo', password '{password}'")
    return center


def _quiet_demo_user(create: Callable[..., str], engine: Any) -> str:
    with contextlib.redirect_stdout(None):
        return create(engine)


async def _center_counts(center: Any, *, wait_for_event: bool) -> dict[str, int] | None:
    """Strips and events of the demo's devices stored by the center (None: no center)."""
    if center is None:
        return None
    import sqlalchemy as sa

    from center.store.schema import events

    def count() -> dict[str, int]:
        query = sa.select(events.c.kind, sa.func.count()).group_by(events.c.kind)
        with center.engine.connect() as conn:
            return {kind: n for kind, n in conn.execute(query)}

    deadline = time.monotonic() + (10.0 if wait_for_event else 0.0)
    counts = await asyncio.to_thread(count)
    while not counts.get("event") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        counts = await asyncio.to_thread(count)
    return counts


async def _scenario(
    gateway: Gateway, patch: SimPatch, seconds: float, echo: Callable[[str], None]
) -> None:
    """Run ``gateway`` for ``seconds``: the patch's link drops, then the patient presses."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="gateway")
    try:
        t0 = time.monotonic()
        streaming = await _wait(lambda: _samples(gateway, PATCH_ID) > 0, 15.0)
        if streaming:
            await asyncio.sleep(BUTTON_AFTER_S / 2)
            echo("demo: the patch loses its Bluetooth link (it keeps recording)")
            await patch.disconnect()
            await asyncio.sleep(BUTTON_AFTER_S / 2)
            press = await patch.press_button()
            echo(f"demo: patient pressed the symptom button (press {press.press_id})")
        remaining = seconds - (time.monotonic() - t0)
        if remaining > 0:
            await asyncio.wait([task], timeout=remaining)
    finally:
        stop.set()
        await task


async def _hold(gateway: Gateway, center: Any, echo: Callable[[str], None]) -> None:
    """Run the gateway again (it goes on from its state) until Ctrl-C."""
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="gateway")
    echo("")
    echo("demo: the gateway restarted and goes on from where it stopped (the patch backfills)")
    if center is not None:
        echo(f"demo: console {center.url} -- press Ctrl-C to stop")
    else:
        echo("demo: press Ctrl-C to stop")
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        echo("demo: stopping")
    finally:
        stop.set()
        await task


def _samples(gateway: Gateway, device_id: str) -> int:
    ch = gateway.channels.get(device_id)
    return ch.counters["samples"] if ch else 0


def _statuses(summary: dict[str, Any]) -> str:
    seen = summary.get("statuses", {}).get(GATEWAY_ID, [])
    return " ".join(seen)


def _count(summary: dict[str, Any], device: str, kind: str) -> int:
    return int(summary.get("counts", {}).get(device, {}).get(kind, 0))


def _judge(
    summary: dict[str, Any],
    sent: dict[str, int],
    gateway: Gateway,
    broker: str,
    out_dir: Path | None,
    in_center: dict[str, int] | None,
    console: str | None,
) -> DemoResult:
    received = {dev: ch.counters["samples"] for dev, ch in gateway.channels.items()}
    gaps = {dev: ch.counters["gap_samples"] for dev, ch in gateway.channels.items()}
    pending = gateway.outbox_pending_at_exit
    statuses = _statuses(summary)
    checks = {
        "live ECG from the patch": _count(summary, PATCH_ID, "live") > 0,
        "live ECG from the cart": _count(summary, CART_ID, "live") > 0,
        "a rhythm strip from the patch": _count(summary, PATCH_ID, "strip") > 0,
        "a rhythm strip from the cart": _count(summary, CART_ID, "strip") > 0,
        "the post-symptom event": _count(summary, PATCH_ID, "event") > 0,
        "status online, then offline": "online" in statuses and statuses.endswith("offline"),
        "outbox empty at exit": pending == 0,
        "no patch sample missing (backfilled)": gaps.get(PATCH_ID, 1) == 0,
    }
    if in_center is not None:
        checks["the event and strips stored by the center"] = bool(
            in_center.get("event") and in_center.get("strip")
        )
    lines = ["", "=== ecg-gateway demo summary ===", f"broker: {broker}", ""]
    lines.append(f"{'device':<10} {'live':>6} {'strip':>6} {'event':>6}")
    for dev in (PATCH_ID, CART_ID):
        counts = [_count(summary, dev, k) for k in ("live", "strip", "event")]
        lines.append(f"{dev:<10} {counts[0]:>6} {counts[1]:>6} {counts[2]:>6}")
    lines.append(f"status messages: {statuses or 'none'}")
    lines.append("")
    lines.append(
        f"{'device':<10} {'sent':>9} {'received':>9} {'missing':>8} {'live at monitor':>16}"
    )
    live_samples = summary.get("live_samples", {})
    for dev in (PATCH_ID, CART_ID):
        lines.append(
            f"{dev:<10} {sent.get(dev, 0):>9} {received.get(dev, 0):>9} "
            f"{gaps.get(dev, 0):>8} {live_samples.get(dev, 0):>16}"
        )
    lines.append(
        "(sent counts samples the devices produced until the gateway stopped; the last "
        "fraction of a second may still have been in flight)"
    )
    extra = {k: summary.get(k) for k in ("duplicates", "seq_gaps", "bad_payloads") if k in summary}
    if extra:
        lines.append("monitor: " + ", ".join(f"{k} {v}" for k, v in extra.items()))
    if in_center is not None:
        lines.append(
            f"center: {in_center.get('event', 0)} event(s), {in_center.get('strip', 0)} strip(s) "
            f"stored; console {console}"
        )
    if out_dir is not None:
        lines.append(f"strips saved as PNG + JSON under {out_dir}")
    lines.append("")
    for what, ok in checks.items():
        lines.append(f"  [{'ok' if ok else 'MISSING'}] {what}")
    ok = all(checks.values())
    lines.append("demo: " + ("everything arrived" if ok else "something did not arrive"))
    return DemoResult(
        ok, checks, summary, sent, received, gaps, pending, broker, out_dir, in_center, lines
    )
