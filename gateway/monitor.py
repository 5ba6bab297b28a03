"""``ecg-gateway monitor``: what a monitoring center sees, in a terminal.

Subscribes to every gateway's status, strips and post-symptom events (and live
ECG with ``--live``), prints a line per message as it arrives — events stand out
— and with ``--out DIR`` saves each strip and event as a PNG on ECG paper plus
its JSON (``DIR/<device>/<kind>-<seq>.png``). Duplicates (at-least-once
delivery) are recognised by ``msg_id`` and skipped; holes in ``seq`` are
reported. Garbage payloads are counted and reported, never fatal.

With ``--client-id ID`` the monitor keeps a persistent session on the broker (clean start
off, ``--session-expiry`` seconds, default a day): strips and events published while it
was away are delivered when it comes back under the same id. Without it the session is
clean and what is published while it is away is not seen (the monitoring center,
``ecg-center``, is what keeps every event).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.consumer import MessageTracker
from gateway.payloads import (
    LIVE_SCHEMA,
    STATUS_SCHEMA,
    STUDY_SCHEMA,
    PayloadError,
    parse_message,
)

__all__ = ["Monitor", "MonitorError", "add_parser", "run_monitor"]

log = logging.getLogger(__name__)
_LIVE_ECHO_S = 5.0


class MonitorError(Exception):
    """The monitor could not connect or subscribe."""


class Monitor:
    """A subscriber that prints and saves what the gateways send.

    Parameters
    ----------
    url
        ``mqtt://host:port`` or ``mqtts://host:port``.
    out_dir
        Where PNG + JSON of each strip/event go (None: not saved).
    prefix
        Topic prefix (``ecg/v1``).
    live
        Also subscribe to live ECG (counted; a line every few seconds per device).
    echo
        Where lines go (``print`` by default); called from paho's network thread.
    client_id
        A stable id: a persistent session (see the module docstring); None: a clean one.
    session_expiry_s
        How long the broker keeps the persistent session while the monitor is away, s.
    """

    def __init__(
        self,
        url: str,
        *,
        out_dir: Path | None = None,
        prefix: str = "ecg/v1",
        live: bool = True,
        echo: Callable[[str], None] = print,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        client_id: str | None = None,
        session_expiry_s: int = 86_400,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise MonitorError(f"broker URL must be mqtt://HOST:PORT or mqtts://..., not {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.prefix = prefix
        self.live = live
        self.echo = echo
        self.tracker = MessageTracker()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._subscribed = threading.Event()
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._live_samples: dict[str, int] = defaultdict(int)
        self._strip_samples: dict[str, int] = defaultdict(int)
        self._statuses: dict[str, list[str]] = defaultdict(list)
        self._last_live_echo: dict[str, float] = {}
        self._saved: list[Path] = []
        self._bad = 0
        self._seq_gaps = 0
        self._connect_error: str | None = None
        self.client_id = client_id
        self.session_expiry_s = session_expiry_s if client_id else 0
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5
        )
        if username:
            client.username_pw_set(username, password)
        if parts.scheme == "mqtts":
            ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if cert_file:
                ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            client.tls_set_context(ctx)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self.client = client

    # --- lifetime ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; :class:`MonitorError` if that does not happen in time."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        try:
            self.client.connect(
                self.host,
                self.port,
                keepalive=30,
                clean_start=self.client_id is None,
                properties=props,
            )
        except OSError as exc:
            raise MonitorError(f"cannot reach the broker at {self.url}: {exc}") from exc
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.client.loop_stop()
            raise MonitorError(
                f"not subscribed at {self.url} after {timeout:g} s: "
                f"{self._connect_error or 'no answer'}"
            )

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def topics(self) -> list[str]:
        p = self.prefix
        out = [f"{p}/+/status", f"{p}/+/+/strip", f"{p}/+/+/event", f"{p}/+/+/study"]
        if self.live:
            out.append(f"{p}/+/+/live")
        return out

    # --- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
            self.echo(f"monitor: broker refused the connection: {reason_code}")
            return
        client.subscribe([(t, 1) for t in self.topics()])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            self._connect_error = "subscription refused: " + ", ".join(bad)
            self.echo(f"monitor: {self._connect_error}")
            return
        self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._handle(msg.topic, bytes(msg.payload))
        except Exception as exc:  # a bad message must never stop the monitor
            with self._lock:
                self._bad += 1
            self.echo(f"monitor: could not handle a message on {msg.topic}: {exc}")

    # --- handling ---------------------------------------------------------------------------
    def _handle(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            body = parse_message(payload)
        except PayloadError as exc:
            with self._changed:
                self._bad += 1
                self._changed.notify_all()
            self.echo(f"monitor: ignored a malformed message on {topic}: {exc}")
            return
        schema = body["schema"]
        try:
            if schema == STATUS_SCHEMA:
                self._status(body)
            elif schema == STUDY_SCHEMA:
                self._study(body)
            elif schema == LIVE_SCHEMA:
                self._live(body)
            else:
                self._strip(body)
        except PayloadError as exc:
            with self._changed:
                self._bad += 1
                self._changed.notify_all()
            self.echo(f"monitor: ignored a malformed message on {topic}: {exc}")

    def _status(self, body: dict[str, Any]) -> None:
        gw, state = str(body["gateway_id"]), str(body["state"])
        with self._changed:
            seen = self._statuses[gw]
            changed = not seen or seen[-1] != state
            if changed:
                seen.append(state)
            self._changed.notify_all()
        if changed:
            self.echo(f"STATUS {gw} {state.upper()} at {body.get('time', '?')}")

    def _study(self, body: dict[str, Any]) -> None:
        rec = body.get("recording") or {}
        hours = float(rec.get("duration_s") or 0.0) / 3600.0
        gaps = body.get("gaps") or []
        self.echo(
            f"study  {body['gateway_id']}/{body['device_id']}  {hours:.2f} h recorded, "
            f"coverage {rec.get('coverage_pct')} %, {rec.get('samples_missing', 0)} samples "
            f"missing, {len(gaps)} new gap(s){'  (final)' if body.get('final') else ''}"
        )

    def _live(self, body: dict[str, Any]) -> None:
        dev = str(body["device_id"])
        n = int(body.get("end_seq", 0)) - int(body.get("first_seq", 0))
        now = time.monotonic()
        with self._changed:
            self._counts[dev]["live"] += 1
            self._live_samples[dev] += n
            due = now - self._last_live_echo.get(dev, -1e9) >= _LIVE_ECHO_S
            if due:
                self._last_live_echo[dev] = now
            total = self._live_samples[dev]
            self._changed.notify_all()
        if due:
            hr = body.get("hr_bpm")
            hr_text = f"HR {hr:.0f} bpm" if isinstance(hr, int | float) else "HR --"
            self.echo(
                f"live   {body.get('gateway_id')}/{dev}  {len(body['leads'])} lead(s) "
                f"{body['fs']:g} Hz  {hr_text}  {total} samples so far"
            )

    def _strip(self, body: dict[str, Any]) -> None:
        _check_strip(body)
        acc = self.tracker.accept(body)
        dev, kind = str(body["device_id"]), str(body["kind"])
        if not acc.new:
            self.echo(f"monitor: duplicate {kind} {dev} seq {acc.seq} ignored")
            return
        saved = self._save(body) if self.out_dir is not None else None
        samples = body["samples"]
        with self._changed:
            self._counts[dev][kind] += 1
            self._strip_samples[dev] += int(samples["n"])
            if acc.missing:
                self._seq_gaps += sum(len(r) for r in acc.missing)
            if saved:
                self._saved.append(saved)
            self._changed.notify_all()
        self.echo(self._describe(body, saved))
        for r in acc.missing:
            self.echo(f"monitor: {kind} seq {r.start}..{r.stop - 1} from {dev} not received (yet)")

    def _describe(self, body: dict[str, Any], saved: Path | None) -> str:
        trig = body.get("trigger") or {}
        facts = body.get("facts") or {}
        s = body["samples"]
        hr = facts.get("heart_rate_bpm")
        hr_text = f"HR {hr:.0f} bpm" if isinstance(hr, int | float) else "HR --"
        gaps = body.get("gaps") or []
        what = {
            "button": "button press",
            "periodic": "periodic",
            "stage_end": "end of stage",
        }.get(str(trig.get("type")), str(trig.get("type")))
        pressed = trig.get("time_utc")
        if trig.get("type") == "button" and isinstance(pressed, str) and "T" in pressed:
            what += " " + pressed.split("T", 1)[1]
        extra = ""
        stage = trig.get("stage")
        if isinstance(stage, dict):
            extra = f"  stage {stage.get('stage')} {stage.get('name', '')}".rstrip()
        bp = facts.get("blood_pressure")
        if isinstance(bp, dict) and bp.get("systolic_mmhg"):
            extra += f"  BP {bp['systolic_mmhg']}/{bp.get('diastolic_mmhg')}"
        st = facts.get("st")
        levels = st.get("st60_mv") if isinstance(st, dict) else None
        if isinstance(levels, dict) and len(levels) > 1:  # multi-lead: the deepest ST
            numeric = {k: v for k, v in levels.items() if isinstance(v, int | float)}
            if numeric:
                lead = min(numeric, key=lambda k: numeric[k])
                extra += f"  ST60 lowest {lead} {10 * numeric[lead]:+.1f} mm"
        kind = body["kind"]
        head = "*** EVENT" if kind == "event" else "strip    "
        line = (
            f"{head} {body.get('gateway_id')}/{body['device_id']}  {what}  {s['start']}  "
            f"{s['n'] / s['fs']:.1f} s  {len(s['leads'])} lead(s) {s['fs']:g} Hz  {hr_text}"
            f"{extra}  gaps {len(gaps)}  seq {body.get('seq')}"
        )
        return line + (f"  -> {saved}" if saved else "")

    def _save(self, body: dict[str, Any]) -> Path | None:
        from gateway.ecgpaper import render_message_png

        assert self.out_dir is not None
        folder = self.out_dir / str(body["device_id"])
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{body['kind']}-{int(body['seq']):06d}"
        (folder / f"{stem}.json").write_text(json.dumps(body, indent=1))
        try:
            return render_message_png(body, folder / f"{stem}.png")
        except Exception as exc:
            self.echo(f"monitor: could not draw {stem}: {exc}")
            return folder / f"{stem}.json"

    # --- results --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts so far (copies; safe from any thread)."""
        with self._lock:
            return {
                "counts": {d: dict(k) for d, k in self._counts.items()},
                "live_samples": dict(self._live_samples),
                "strip_samples": dict(self._strip_samples),
                "statuses": {g: list(s) for g, s in self._statuses.items()},
                "duplicates": self.tracker.duplicates,
                "seq_gaps": self._seq_gaps,
                "bad_payloads": self._bad,
                "saved": [str(p) for p in self._saved],
            }

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Block until ``predicate(summary())`` is true or ``timeout`` s passed."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.summary()):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._changed:
                self._changed.wait(min(left, 0.5))


def _check_strip(body: dict[str, Any]) -> None:
    """:class:`PayloadError` unless the fields the monitor reads have usable types."""
    s = body.get("samples")
    ok = (
        isinstance(body.get("seq"), int)
        and isinstance(s, dict)
        and isinstance(s.get("n"), int)
        and isinstance(s.get("fs"), int | float)
        and s["fs"] > 0
        and isinstance(s.get("leads"), list)
        and body.get("kind") in ("strip", "event")
    )
    if not ok:
        raise PayloadError("strip/event message with bad seq, kind or samples fields")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gateway.cli import subcommand

    p = subcommand(sub, "monitor", run_monitor)
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    p.add_argument("--out", type=Path, default=None, help="save strips here (PNG + JSON)")
    p.add_argument("--prefix", default="ecg/v1", help="topic prefix (default ecg/v1)")
    p.add_argument("--live", action="store_true", help="also follow live ECG")
    p.add_argument(
        "--client-id",
        help="keep a persistent session under this id: what is published while the monitor "
        "is away arrives when it comes back",
    )
    p.add_argument(
        "--session-expiry",
        type=int,
        default=86_400,
        metavar="S",
        help="how long the broker keeps that session while away, s (default a day)",
    )
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path)
    p.add_argument("--ca-file", type=Path)
    p.add_argument("--cert-file", type=Path)
    p.add_argument("--key-file", type=Path)


def run_monitor(args: argparse.Namespace) -> int:
    """Run until Ctrl-C or SIGTERM; print the summary."""
    password = None
    if args.password_file:
        password = args.password_file.read_text().strip()
    try:
        mon = Monitor(
            args.broker,
            out_dir=args.out,
            prefix=args.prefix,
            live=args.live,
            username=args.username,
            password=password,
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            client_id=args.client_id,
            session_expiry_s=args.session_expiry,
        )
        mon.start()
    except MonitorError as exc:
        print(f"ecg-gateway monitor: {exc}")
        return 1
    print(f"monitor: subscribed to {', '.join(mon.topics())} at {args.broker}; Ctrl-C to stop")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        mon.stop()
    print(json.dumps({k: v for k, v in mon.summary().items() if k != "saved"}, indent=1))
    return 0
