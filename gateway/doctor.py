"""``ecg-gateway doctor --config FILE``: is this gateway ready, and if not, how to fix it.

Each check is a small pure function over :class:`Facts` returning :class:`Result` lines (OK,
WARN or FAIL, what was seen, one line on how to fix it); :func:`gather` is the thin shell that
collects the facts (D-Bus, groups, a short BLE scan, serial ports, the broker, files, the
clock, systemd). Tests make each check fail by handing it facts. Exit status 1 when any check
FAILs; ``--json`` prints the results for scripts.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import CartSerialDevice, GatewayConfig
from gateway.preflight import Problem, preflight

__all__ = ["CHECKS", "Facts", "Result", "gather", "render", "run_checks"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SERVICE_USER = "ecg-gateway"
UNIT = "ecg-gateway.service"
CERT_WARN_DAYS = 21.0
BACKLOG_WARN = 200


@dataclass(frozen=True)
class Result:
    """One check's verdict: ``status`` OK/WARN/FAIL, what was seen, how to fix it."""

    check: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class Facts:
    """Everything the checks look at, gathered once (None: could not be found out)."""

    cfg: GatewayConfig
    bluez: dict[str, Any] = field(default_factory=dict)  # {"error"} or {"powered": bool}
    user: str = ""
    groups: set[str] = field(default_factory=set)
    ble_seen: dict[str, int | None] | None = None  # address (upper) -> RSSI, None: no scan
    serial: dict[str, str] = field(default_factory=dict)  # port -> "ok" or the error
    broker: dict[str, Any] = field(default_factory=dict)  # {"error"} or {"connack": code}
    cert: dict[str, Any] | None = None  # {"cn", "days_left"} or {"error"}
    clock_synced: bool | None = None
    disk_free_mb: float | None = None
    state_used_mb: float = 0.0
    outbox_pending: int | None = None
    state_dir: dict[str, Any] = field(default_factory=dict)  # {"mode", "owner"} or {"error"}
    unit: dict[str, Any] = field(default_factory=dict)  # {"installed", "enabled"} / {"error"}
    preflight: list[Problem] = field(default_factory=list)  # what `run` itself would say


# --- the checks (pure) ------------------------------------------------------------------------
def check_bluez(f: Facts) -> list[Result]:
    if not any(d.kind != "cart_serial" for d in f.cfg.devices):
        return [Result("bluetooth", OK, "no BLE device configured")]
    if "error" in f.bluez:
        fix = "sudo apt-get install -y bluez && sudo systemctl enable --now bluetooth"
        return [Result("bluetooth", FAIL, f"BlueZ not reachable: {f.bluez['error']}", fix)]
    if not f.bluez.get("powered"):
        adapter = f.cfg.gateway.ble_adapter
        fix = f"bluetoothctl power on (or: rfkill unblock bluetooth; check {adapter})"
        return [Result("bluetooth", FAIL, f"adapter {adapter} is off", fix)]
    return [Result("bluetooth", OK, f"BlueZ running, {f.cfg.gateway.ble_adapter} powered")]


def check_groups(f: Facts) -> list[Result]:
    need = set()
    if any(d.kind != "cart_serial" for d in f.cfg.devices):
        need.add("bluetooth")
    if any(d.kind == "cart_serial" for d in f.cfg.devices):
        need.add("dialout")
    missing = sorted(need - f.groups)
    if missing:
        fix = f"sudo usermod -aG {','.join(missing)} {f.user} (then restart the service)"
        return [Result("groups", FAIL, f"user {f.user} is not in {', '.join(missing)}", fix)]
    return [Result("groups", OK, f"user {f.user} in {', '.join(sorted(need)) or 'what it needs'}")]


def check_devices(f: Facts) -> list[Result]:
    out = []
    for d in f.cfg.devices:
        name = f"device {d.id}"
        if isinstance(d, CartSerialDevice):
            state = f.serial.get(d.port, "not checked")
            out.append(
                Result(name, OK, f"{d.port} present and readable")
                if state == "ok"
                else Result(
                    name,
                    FAIL,
                    f"{d.port}: {state}",
                    "plug the cart's USB cable in; check the udev rule "
                    "(udev/99-ecg-cart.rules) and the dialout group",
                )
            )
        elif f.ble_seen is None:
            out.append(
                Result(
                    name,
                    WARN,
                    f"{d.address} not looked for (no BLE scan)",
                    "fix Bluetooth first, then run doctor again",
                )
            )
        elif d.address.upper() in f.ble_seen:
            rssi = f.ble_seen[d.address.upper()]
            weak = rssi is not None and rssi < -90
            out.append(
                Result(
                    name,
                    WARN if weak else OK,
                    f"{d.address} advertising, RSSI {rssi} dBm",
                    "move the gateway closer to the patient" if weak else "",
                )
            )
        else:
            out.append(
                Result(
                    name,
                    FAIL,
                    f"{d.address} not heard in the scan",
                    "wake the patch (press its button), check it is charged and in "
                    "range, and that no phone holds its connection",
                )
            )
    return out


def check_broker(f: Facts) -> list[Result]:
    url = f.cfg.mqtt.url
    if "error" in f.broker:
        fix = (
            "check the network, the broker address and port, and the certificate "
            "files in [mqtt]"
        )
        return [Result("broker", FAIL, f"{url}: {f.broker['error']}", fix)]
    code = f.broker.get("connack")
    if code:
        fix = (
            "the broker does not accept this identity: check its ACL and that the "
            "certificate's CN is the gateway id"
        )
        return [Result("broker", FAIL, f"{url} refused the connection (reason 0x{code:02X})", fix)]
    tls = " over TLS" if f.cfg.mqtt.tls else " (plaintext!)"
    fix = "" if f.cfg.mqtt.tls else "use mqtts:// for patient data"
    return [Result("broker", OK if f.cfg.mqtt.tls else WARN, f"{url} accepted us{tls}", fix)]


def check_certificate(f: Facts) -> list[Result]:
    if f.cert is None:
        seen = "no client certificate configured"
        fix = "enroll: ecg-gateway provision" if f.cfg.mqtt.tls else ""
        return [Result("certificate", WARN if f.cfg.mqtt.tls else OK, seen, fix)]
    if "error" in f.cert:
        fix = "enroll again: ecg-gateway provision (with a new token from the center)"
        return [Result("certificate", FAIL, f.cert["error"], fix)]
    days, cn = f.cert["days_left"], f.cert["cn"]
    if cn != f.cfg.gateway.id:
        seen = f"CN {cn!r} is not the gateway id {f.cfg.gateway.id!r}"
        fix = "enroll this gateway id: ecg-gateway provision"
        return [Result("certificate", FAIL, seen, fix)]
    if days <= 0:
        return [Result("certificate", FAIL, "expired", "enroll again with a new token")]
    if days < CERT_WARN_DAYS:
        fix = (
            "ecg-gateway provision "
            "--renew --config FILE (the renewal timer should have done it)"
        )
        return [Result("certificate", WARN, f"{days:.0f} days left", fix)]
    return [Result("certificate", OK, f"CN {cn}, {days:.0f} days left")]


def check_clock(f: Facts) -> list[Result]:
    if f.clock_synced:
        return [Result("clock", OK, "synchronised")]
    status = WARN if f.clock_synced is None else FAIL
    seen = "not synchronised" if f.clock_synced is False else "synchronisation state unknown"
    fix = "sudo timedatectl set-ntp true; check that NTP (UDP 123) reaches a server"
    return [Result("clock", status, seen, fix)]


def quota_mb(cfg: GatewayConfig) -> float:
    """What the outbox and the recordings may take on disk, MB."""
    rec = cfg.recording.max_mb * len(cfg.devices) if cfg.recording.enabled else 0.0
    return cfg.gateway.outbox_max_mb + rec


def check_disk(f: Facts) -> list[Result]:
    if f.disk_free_mb is None:
        fix = "create the state directory (see README)"
        return [Result("disk", FAIL, f"{f.cfg.gateway.state_dir} not measurable", fix)]
    need = quota_mb(f.cfg) - f.state_used_mb
    if f.disk_free_mb < f.cfg.gateway.outbox_max_mb * 0.1:
        fix = "free disk space or use a larger SD card"
        return [Result("disk", FAIL, f"{f.disk_free_mb:.0f} MB free", fix)]
    if f.disk_free_mb < need:
        seen = f"{f.disk_free_mb:.0f} MB free, quotas need {need:.0f} MB more"
        fix = "lower [recording] max_mb / outbox_max_mb or use a larger card"
        return [Result("disk", WARN, seen, fix)]
    return [Result("disk", OK, f"{f.disk_free_mb:.0f} MB free, quotas fit ({need:.0f} MB)")]


def check_outbox(f: Facts) -> list[Result]:
    if f.outbox_pending is None:
        return [Result("outbox", OK, "empty (never run)")]
    if f.outbox_pending > BACKLOG_WARN:
        fix = "the broker was unreachable: see the broker check and the journal"
        return [Result("outbox", WARN, f"{f.outbox_pending} messages waiting", fix)]
    return [Result("outbox", OK, f"{f.outbox_pending} waiting")]


def check_state_dir(f: Facts) -> list[Result]:
    d, path = f.state_dir, f.cfg.gateway.state_dir
    if "error" in d:
        fix = f"sudo install -d -m 0700 -o {SERVICE_USER} {path}"
        return [Result("state dir", FAIL, f"{path}: {d['error']}", fix)]
    problems = []
    if d["mode"] & 0o077:
        problems.append(f"mode {d['mode']:04o} (others can read patient data)")
    if d.get("owner") not in (f.user, SERVICE_USER):
        problems.append(f"owned by {d.get('owner')}")
    if problems:
        fix = f"sudo chown {SERVICE_USER} {path} && sudo chmod 700 {path}"
        return [Result("state dir", FAIL, f"{path}: {', '.join(problems)}", fix)]
    return [Result("state dir", OK, f"{path} private ({d['mode']:04o}, {d.get('owner')})")]


def check_unit(f: Facts) -> list[Result]:
    u = f.unit
    fix = (
        "sudo cp systemd/ecg-gateway.service /etc/systemd/system/ && sudo systemctl "
        "daemon-reload && sudo systemctl enable --now ecg-gateway"
    )
    if "error" in u:
        return [Result("systemd unit", FAIL, u["error"], fix)]
    if not u.get("installed"):
        return [Result("systemd unit", FAIL, f"{UNIT} is not installed", fix)]
    if not u.get("enabled"):
        fix = "sudo systemctl enable --now ecg-gateway"
        return [Result("systemd unit", FAIL, f"{UNIT} is not enabled", fix)]
    return [Result("systemd unit", OK, f"{UNIT} installed and enabled")]


def check_start(f: Facts) -> list[Result]:
    """What ``ecg-gateway run`` checks before it starts (gateway/preflight.py): a FAIL here
    is a service that refuses to start (exit 78)."""
    if not f.preflight:
        return [Result("start checks", OK, "credentials, state dir and ports as `run` needs")]
    return [
        Result(
            "start checks",
            FAIL if p.fatal else WARN,
            f"{p.where}: {p.text}",
            "see `ecg-gateway config check` (as the service user: with sudo)",
        )
        for p in f.preflight
    ]


CHECKS: list[Callable[[Facts], list[Result]]] = [
    check_start,
    check_bluez,
    check_groups,
    check_devices,
    check_broker,
    check_certificate,
    check_clock,
    check_disk,
    check_outbox,
    check_state_dir,
    check_unit,
]


def run_checks(facts: Facts) -> list[Result]:
    """Every check's results, in order."""
    return [r for check in CHECKS for r in check(facts)]


def render(results: list[Result], as_json: bool = False) -> str:
    """Lines for a person (with the fix under each WARN/FAIL), or JSON for a script."""
    if as_json:
        return json.dumps([asdict(r) for r in results], indent=1)
    lines = []
    for r in results:
        lines.append(f"{r.status:<4}  {r.check}: {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"      fix: {r.fix}")
    return "\n".join(lines)


# --- the fact gatherer (thin) -------------------------------------------------------------------
def _user_and_groups() -> tuple[str, set[str]]:
    """The service user when it exists and we are root (what the service will be), else us."""
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(SERVICE_USER)
            groups = {g.gr_name for g in grp.getgrall() if SERVICE_USER in g.gr_mem}
            return SERVICE_USER, groups | {grp.getgrgid(pw.pw_gid).gr_name}
        except KeyError:
            pass
    name = pwd.getpwuid(os.geteuid()).pw_name
    return name, {grp.getgrgid(g).gr_name for g in os.getgroups()} | (
        {"bluetooth", "dialout"} if os.geteuid() == 0 else set()
    )


async def _bluez(adapter: str) -> dict[str, Any]:
    try:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        async with asyncio.timeout(3.0):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except Exception as exc:
        return {"error": f"no system D-Bus ({type(exc).__name__}: {exc})"}
    try:
        async with asyncio.timeout(3.0):
            path = f"/org/bluez/{adapter}"
            node = await bus.introspect("org.bluez", path)
            props = bus.get_proxy_object("org.bluez", path, node).get_interface(
                "org.freedesktop.DBus.Properties"
            )
            powered = await props.call_get("org.bluez.Adapter1", "Powered")  # type: ignore[attr-defined]
            return {"powered": bool(powered.value)}
    except Exception as exc:
        return {"error": f"bluetoothd or {adapter} not there ({type(exc).__name__}: {exc})"}
    finally:
        bus.disconnect()


def _serial(port: str) -> str:
    try:
        fd = os.open(port, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        os.close(fd)
        return "ok"
    except OSError as exc:
        return exc.strerror or str(exc)


def _files(cfg: GatewayConfig, f: Facts) -> None:
    from gateway.health import read_clock_synchronized

    sd = cfg.gateway.state_dir
    try:
        st = sd.stat()
        owner = pwd.getpwuid(st.st_uid).pw_name if st.st_uid >= 0 else "?"
        f.state_dir = {"mode": stat.S_IMODE(st.st_mode), "owner": owner}
        f.disk_free_mb = shutil.disk_usage(sd).free / 1e6
        f.state_used_mb = sum(p.stat().st_size for p in sd.rglob("*") if p.is_file()) / 1e6
    except (OSError, KeyError) as exc:
        f.state_dir = {"error": getattr(exc, "strerror", None) or str(exc)}
    outbox = sd / "outbox.sqlite3"
    if outbox.exists():
        try:
            with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
                f.outbox_pending = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        except sqlite3.Error:
            f.outbox_pending = None
    f.clock_synced = read_clock_synchronized()
    if cfg.mqtt.cert_file is not None:
        f.cert = _cert(cfg.mqtt.cert_file)


def _cert(path: Path) -> dict[str, Any]:
    from gateway.enroll import cert_info

    try:
        info = cert_info(path)
    except (OSError, ValueError) as exc:
        return {"error": f"{path} not readable: {getattr(exc, 'strerror', None) or exc}"}
    return {"cn": info.cn, "days_left": info.days_left(time.time())}


def _unit() -> dict[str, Any]:
    if shutil.which("systemctl") is None:
        return {"error": "systemctl not found (not a systemd system?)"}
    try:
        out = subprocess.run(
            ["systemctl", "is-enabled", UNIT], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": str(exc)}
    state = out.stdout.strip()
    if out.returncode != 0 and not state:
        return {"error": (out.stderr.strip() or "systemctl failed").splitlines()[0]}
    return {"installed": state not in ("", "not-found"), "enabled": state == "enabled"}


async def gather(cfg: GatewayConfig, *, ble_backend: Any = None, scan_s: float = 4.0) -> Facts:
    """Collect every fact (a few seconds: the BLE scan and the broker)."""
    from gateway.provision_mqtt import probe_broker

    f = Facts(cfg)
    f.user, f.groups = _user_and_groups()
    ble = [d for d in cfg.devices if d.kind != "cart_serial"]
    f.bluez = (
        {"powered": True} if ble_backend is not None else await _bluez(cfg.gateway.ble_adapter)
    )
    if ble and "error" not in f.bluez and f.bluez.get("powered"):
        from gateway.provision_scan import scan_patches

        try:
            seen = await scan_patches(scan_s, backend=ble_backend)
            f.ble_seen = {p.address.upper(): p.rssi_dbm for p in seen}
        except Exception as exc:  # BlueZ went away between the checks
            f.bluez = {"error": f"scan failed: {exc!r}"}
    f.serial = {d.port: _serial(d.port) for d in cfg.devices if isinstance(d, CartSerialDevice)}
    f.broker = await probe_broker(cfg)
    _files(cfg, f)
    f.unit = _unit()
    f.preflight = preflight(cfg)
    return f


async def doctor(
    cfg: GatewayConfig,
    *,
    as_json: bool = False,
    ble_backend: Any = None,
    scan_s: float = 4.0,
    echo: Callable[[str], None] = print,
) -> int:
    """Gather, check, print; the exit status (1 when any check FAILs)."""
    results = run_checks(await gather(cfg, ble_backend=ble_backend, scan_s=scan_s))
    echo(render(results, as_json))
    if not as_json:
        fails = sum(r.status == FAIL for r in results)
        warns = sum(r.status == WARN for r in results)
        echo(f"\n{len(results)} checks: {fails} FAIL, {warns} WARN")
    return 1 if any(r.status == FAIL for r in results) else 0
