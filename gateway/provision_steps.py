"""The steps of ``ecg-gateway provision`` (see :mod:`gateway.provision`), one method each.

:class:`Wizard` asks (or reads flags), checks each answer at once and moves on; a failed
step raises :class:`ProvisionError` with what to do. :func:`summary` is the text for the
engineer and the patient.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Answers", "ProvisionError", "Wizard", "summary"]

EXIT_FAILED = 1
EXIT_CONFIG = 78
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ProvisionError(Exception):
    """A step failed; ``str()`` says what to do; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Answers:
    """What the engineer chose and what each step produced."""

    gateway_id: str = ""
    center: str = ""
    broker: str = ""
    enrolled: Any = None
    patches: list[dict[str, Any]] = field(default_factory=list)
    carts: list[dict[str, Any]] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    udev_rule: Path | None = None
    config: Path | None = None
    ping: Any = None


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    """``ID=VALUE`` flags, each id checked."""
    out = []
    for v in values:
        dev_id, sep, rest = v.partition("=")
        if not sep or not _ID.match(dev_id) or not rest:
            raise ProvisionError(f"--{what} {v!r}: expected ID=VALUE with a valid id")
        out.append((dev_id, rest))
    return out


class Wizard:
    """Interactive or scripted provisioning (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, *, ask: Callable[[str, str | None], str],
                 echo: Callable[[str], None], ble_backend: Any = None,
                 ports: list[Any] | None = None) -> None:
        self.args, self.ask, self.echo = args, ask, echo
        self.scripted = bool(args.non_interactive)
        self.ble_backend, self.ports = ble_backend, ports
        self.a = Answers()

    def question(self, text: str, default: str | None, check: Callable[[str], str],
                 flag: str | None) -> str:
        """The flag's value (scripted) or the engineer's answer, checked; asked again when
        wrong (interactive) or fatal (scripted)."""
        if self.scripted or flag:
            try:
                return check(flag or default or "")
            except ValueError as exc:
                raise ProvisionError(f"{text}: {exc}") from None
        while True:
            try:
                return check(self.ask(text, default))
            except ValueError as exc:
                self.echo(f"  ✗ {exc}")

    async def run(self) -> Answers:
        self.echo("ecg-gateway provisioning — each answer is checked as you give it\n")
        await self.step_enroll()
        self.step_broker()
        await self.step_patches()
        self.step_carts()
        self.step_config()
        await self.step_test()
        return self.a

    # --- 1. identity and enrollment ------------------------------------------------------------
    async def step_enroll(self) -> None:
        from gateway.enroll import EnrollError, enroll, enroll_url

        def gw(v: str) -> str:
            if not _ID.match(v):
                raise ValueError("1-64 of A-Z a-z 0-9 _ . - (pseudonymous: never a patient name)")
            return v

        def url(v: str) -> str:
            try:
                enroll_url(v)
            except EnrollError as exc:
                raise ValueError(str(exc)) from None
            return v

        a, args = self.a, self.args
        a.gateway_id = self.question("gateway id", None, gw, args.gateway_id)
        a.center = self.question("center URL", None, url, args.center)
        token = self.question("enrollment token", None, _nonempty, args.token)
        tls = args.tls_dir
        self.echo(f"• making this gateway's key and asking {a.center} to sign it ...")
        try:
            a.enrolled = await asyncio.to_thread(
                enroll, a.center, token, a.gateway_id, cert_file=tls / "client.pem",
                key_file=tls / "client.key", ca_file=tls / "ca.pem", center_ca=args.center_ca)
        except EnrollError as exc:
            raise ProvisionError(f"enrollment refused: {exc}") from None
        from gateway.provision_files import chown_service

        chown_service([tls, tls / "client.key", tls / "client.pem", tls / "ca.pem"], args.owner)
        days = (a.enrolled.not_after - time.time()) / 86400
        self.echo(f"  ✓ certificate for {a.gateway_id} (serial {a.enrolled.serial}, {days:.0f} "
                  f"days; key {tls / 'client.key'} 0600, never leaves this Pi)")

    # --- 2. the broker ---------------------------------------------------------------------------
    def step_broker(self) -> None:
        from gateway.config import MqttConfig

        def broker(v: str) -> str:
            try:
                MqttConfig(url=v)
            except Exception as exc:
                raise ValueError(str(exc).splitlines()[-1].strip()) from None
            return v

        default = self.a.enrolled.broker_url if self.a.enrolled else None
        self.a.broker = self.question("broker URL", default, broker, self.args.broker)

    # --- 3. patches ----------------------------------------------------------------------------
    async def step_patches(self) -> None:
        from gateway.provision_scan import scan_patches

        args, a = self.args, self.a
        if args.no_scan:
            if args.patch:
                raise ProvisionError("--patch needs the BLE scan (drop --no-scan)")
            return
        self.echo(f"• scanning for patches for {args.scan_seconds:g} s ...")
        try:
            a.seen = await scan_patches(args.scan_seconds, backend=self.ble_backend)
        except Exception as exc:
            raise ProvisionError(f"BLE scan failed ({exc}); check Bluetooth with "
                                 "'ecg-gateway doctor', or use --no-scan for carts only") from None
        for i, p in enumerate(a.seen, 1):
            battery = f", battery {p.battery_pct} %" if p.battery_pct is not None else ""
            self.echo(f"  {i}. {p.name or '(no name)'}  {p.address}  {p.rssi_dbm} dBm  "
                      f"{p.profile or 'not an ECG patch'}{battery}")
        chosen = _pairs(args.patch, "patch") if (self.scripted or args.patch) else self._pick()
        by_addr = {p.address.upper(): p for p in a.seen}
        for dev_id, address in chosen:
            p = by_addr.get(address.upper())
            if p is None or p.kind is None:
                raise ProvisionError(f"patch {address} was not heard as an ECG patch in the "
                                     "scan: wake it (press its button) and run again")
            a.patches.append({"kind": p.kind, "id": dev_id, "address": p.address})

    def _pick(self) -> list[tuple[str, str]]:
        usable = [p for p in self.a.seen if p.kind is not None]
        if not usable:
            self.echo("  (no ECG patch heard)")
            return []

        def numbers(v: str) -> str:
            for n in v.replace(",", " ").split():
                if not n.isdigit() or not 1 <= int(n) <= len(self.a.seen) or \
                        self.a.seen[int(n) - 1].kind is None:
                    raise ValueError(f"{n}: not the number of an ECG patch in the list")
            return v

        picked = self.question("patches to pair (numbers, e.g. 1 3; empty: none)", "",
                               numbers, None)
        out = []
        for n in picked.replace(",", " ").split():
            p = self.a.seen[int(n) - 1]
            dev_id = self.question(f"device id for {p.name or p.address}",
                                   f"patch-{len(out) + 1}", _device_id, None)
            out.append((dev_id, p.address))
        return out

    # --- 4. carts ------------------------------------------------------------------------------
    def step_carts(self) -> None:
        from gateway.provision_files import write_udev_rule
        from gateway.provision_scan import find_carts

        args, a = self.args, self.a
        carts = find_carts(self.ports)
        for c in carts:
            usb = f"{c.vid:04x}:{c.pid:04x}" if c.vid is not None else "not USB"
            self.echo(f"  cart port {c.device} ({usb}, serial {c.serial or '-'}) "
                      f"{'→ ' + c.stable if c.stable else ''}")
        chosen = _pairs(args.cart, "cart") if (self.scripted or args.cart) else \
            self._pick_carts(carts)
        known = {c.device: c for c in carts} | {c.stable: c for c in carts if c.stable}
        for dev_id, port in chosen:
            c = known.get(port)
            if c is None and not Path(port).exists():
                raise ProvisionError(f"cart port {port} not found: plug the cart in")
            name = c.stable if c is not None and c.stable else port
            a.carts.append({"kind": "cart_serial", "id": dev_id, "port": name})
        if any(c["port"].startswith("/dev/ecg-cart-") for c in a.carts):
            a.udev_rule = write_udev_rule(args.udev_dir)

    def _pick_carts(self, carts: list[Any]) -> list[tuple[str, str]]:
        if not carts:
            return []
        port = self.question("cart port to pair (empty: none)", "", _port_or_empty, None)
        if not port:
            return []
        return [(self.question("device id for the cart", "cart-1", _device_id, None), port)]

    # --- 5. configuration ---------------------------------------------------------------------
    def step_config(self) -> None:
        from gateway.config import ConfigError
        from gateway.provision_files import chown_service, config_dict, write_config

        a, args = self.a, self.args
        if not a.patches and not a.carts:
            self.echo("  (no device paired: the gateway will run and report without devices)")
        data = config_dict(gateway_id=a.gateway_id, state_dir=args.state_dir, broker_url=a.broker,
                           tls_dir=args.tls_dir, patches=a.patches, carts=a.carts)
        try:
            write_config(args.config, data)
        except ConfigError as exc:
            raise ProvisionError(str(exc), EXIT_CONFIG) from None
        chown_service([args.config], args.owner, group_only=True)  # root:ecg-gateway 0640
        a.config = args.config
        args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        chown_service([args.state_dir], args.owner)
        self.echo(f"  ✓ configuration written and validated: {args.config}")

    # --- 6. test transmission -----------------------------------------------------------------
    async def step_test(self) -> None:
        from gateway.config import load_config
        from gateway.provision_mqtt import test_transmission

        cfg = load_config(self.args.config)
        self.echo(f"• test transmission to the center through {cfg.mqtt.url} ...")
        self.a.ping = await test_transmission(cfg, timeout_s=self.args.ping_timeout)
        mark = "✓" if self.a.ping.ok else "✗"
        self.echo(f"  {mark} {self.a.ping.detail}")


def _nonempty(v: str) -> str:
    if not v.strip():
        raise ValueError("required")
    return v.strip()


def _device_id(v: str) -> str:
    if not _ID.match(v):
        raise ValueError("1-64 of A-Z a-z 0-9 _ . -")
    return v


def _port_or_empty(v: str) -> str:
    if v and not Path(v).exists():
        raise ValueError(f"{v} does not exist")
    return v


def summary(a: Answers, elapsed_s: float) -> str:
    """What was done, what was tested, and what to tell the patient."""
    ok = a.ping is not None and a.ping.ok
    devices = [f"  - {d['id']}: {d['kind']} {d.get('address') or d.get('port')}"
               for d in [*a.patches, *a.carts]] or ["  - none"]
    lines = [
        "", "=" * 66,
        f"gateway {a.gateway_id}: {'READY' if ok else 'NOT VERIFIED'} ({elapsed_s:.0f} s)",
        "=" * 66,
        f"enrolled with {a.center}; certificate serial "
        f"{a.enrolled.serial if a.enrolled else '-'}",
        f"broker: {a.broker}", "paired:", *devices,
        f"configuration: {a.config}" + (f"; cart names by {a.udev_rule}" if a.udev_rule else ""),
        f"test transmission: {a.ping.detail if a.ping else 'not run'}"
        + (f" (round trip {a.ping.rtt_ms:.0f} ms)" if ok else ""),
        "",
        "For the patient:",
        "  • Keep the patch on and this box plugged in, within a few metres of where you sleep.",
        "  • Press the patch button when you feel a symptom; the center receives it.",
        "  • If the box's light goes out or blinks for more than a few minutes, unplug it for",
        "    ten seconds and plug it in again; if it stays out, call the center. Nothing the",
        "    patch recorded is lost while the box is off: it is sent when it is back.",
        "",
        "Next: sudo systemctl enable --now ecg-gateway;  then: ecg-gateway doctor --config "
        f"{a.config}",
    ]
    return "\n".join(lines)
