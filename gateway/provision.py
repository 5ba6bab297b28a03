"""``ecg-gateway provision``: a blank Pi to an enrolled, paired, verified gateway.

The steps (docs/provisioning.md), each answer checked as soon as it is given:

1. the gateway id and the center (its URL and a one-time token from
   ``ecg-center enroll-token``): a key is made here, the center signs its CSR
   (:mod:`gateway.enroll`), the certificate, key (0600) and CA land in ``--tls-dir``;
2. the broker (the center tells it at enrollment, or the engineer types it);
3. the patches: a BLE scan lists name, address, RSSI, battery and profile; the engineer picks;
4. the carts: serial ports by USB id (pyserial), with the udev rule that gives them stable
   names (``/dev/ecg-cart-<serial>``);
5. the configuration: validated by the gateway's own schema, written atomically (0640);
6. the test transmission: a ping through the broker to the center and its pong back, with
   the round-trip time (:mod:`gateway.provision_mqtt`);
7. a summary the engineer reads to the patient.

``--non-interactive`` takes every answer from flags and fails on the first bad one.
``--renew --config FILE`` renews the certificate instead (what the renewal timer runs).
Nothing here is imported by the running gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.provision_steps import (
    EXIT_CONFIG,
    EXIT_FAILED,
    Answers,
    ProvisionError,
    Wizard,
    summary,
)

__all__ = ["add_arguments", "add_command", "run_provision"]


def add_command(sub: argparse._SubParsersAction) -> None:
    """``ecg-gateway provision``: its parser, flags and what it runs."""
    p = sub.add_parser(
        "provision",
        help="turn this Pi into an enrolled, paired, verified gateway (guided)",
        description="Asks (or takes from flags with --non-interactive) the gateway id, the "
        "center's URL and a one-time enrollment token; makes this gateway's key and has the "
        "center sign it; scans for patches and serial carts to pair; writes the configuration "
        "(validated, atomically); sends a test transmission to the center and back; prints a "
        "summary to read to the patient. --renew renews the certificate instead.",
    )
    add_arguments(p)
    p.set_defaults(func=lambda args: asyncio.run(run_provision(args)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``ecg-gateway provision`` (every question has one)."""
    p.add_argument("--non-interactive", action="store_true",
                   help="take every answer from flags; fail on the first bad one")
    p.add_argument("--gateway-id", help="pseudonymous gateway id (its certificate's CN)")
    p.add_argument("--center", help="the center's URL, e.g. https://center.example.org")
    p.add_argument("--token", help="one-time enrollment token (ecg-center enroll-token)")
    p.add_argument("--center-ca", type=Path, help="CA file for the center's HTTPS (if private)")
    p.add_argument("--broker", help="mqtts://HOST:PORT (default: what the center says)")
    p.add_argument("--patch", action="append", default=[], metavar="ID=ADDRESS",
                   help="pair this patch (seen in the scan); repeat for more")
    p.add_argument("--cart", action="append", default=[], metavar="ID=PORT",
                   help="pair this serial cart (device or /dev/ecg-cart-SERIAL); repeat")
    p.add_argument("--scan-seconds", type=float, default=5.0, help="BLE scan length (5 s)")
    p.add_argument("--no-scan", action="store_true", help="skip the BLE scan (carts only)")
    p.add_argument("--config", "-c", type=Path, default=Path("/etc/ecg-gateway/gateway.toml"),
                   help="configuration to write (default /etc/ecg-gateway/gateway.toml)")
    p.add_argument("--tls-dir", type=Path, default=Path("/etc/ecg-gateway/tls"),
                   help="where the key, certificate and CA go (default /etc/ecg-gateway/tls)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/ecg-gateway"))
    p.add_argument("--udev-dir", type=Path, default=Path("/etc/udev/rules.d"),
                   help="where the cart udev rule goes when a cart is paired")
    p.add_argument("--owner", default="ecg-gateway",
                   help="service user that must own the key (skipped if it does not exist)")
    p.add_argument("--ping-timeout", type=float, default=20.0, help="test transmission, s")
    p.add_argument("--renew", action="store_true",
                   help="renew the certificate of --config (no token; by its current key)")
    p.add_argument("--renew-days", type=float, default=30.0,
                   help="with --renew: only when fewer days than this are left (30)")
    p.add_argument("--force", action="store_true", help="with --renew: renew now")


def _prompt(question: str, default: str | None) -> str:
    shown = f" [{default}]" if default else ""
    answer = input(f"{question}{shown}: ").strip()
    return answer or (default or "")


async def run_provision(args: argparse.Namespace, *, ble_backend: Any = None,
                        ports: list[Any] | None = None,
                        ask: Callable[[str, str | None], str] = _prompt,
                        echo: Callable[[str], None] = print) -> int:
    """The whole command; its exit status (0 verified, 1 a step failed, 78 bad config)."""
    if args.renew:
        return await asyncio.to_thread(renew_command, args, echo)
    started = time.monotonic()
    wizard = Wizard(args, ask=ask, echo=echo, ble_backend=ble_backend, ports=ports)
    try:
        answers: Answers = await wizard.run()
    except ProvisionError as exc:
        echo(f"\nprovisioning stopped: {exc}")
        return exc.code
    except (KeyboardInterrupt, EOFError):
        echo("\nprovisioning interrupted; nothing is half-written (files are replaced whole)")
        return EXIT_FAILED
    echo(summary(answers, time.monotonic() - started))
    return 0 if answers.ping is not None and answers.ping.ok else EXIT_FAILED


def renew_command(args: argparse.Namespace, echo: Callable[[str], None] = print) -> int:
    """``provision --renew``: a new certificate when fewer than ``--renew-days`` remain."""
    from gateway.config import ConfigError, load_config
    from gateway.enroll import EnrollError, cert_info, needs_renewal, renew

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        echo(str(exc))
        return EXIT_CONFIG
    m = cfg.mqtt
    if m.cert_file is None or m.key_file is None or m.ca_file is None:
        echo("no certificate to renew: [mqtt] cert_file, key_file and ca_file are not set")
        return EXIT_CONFIG
    try:
        info = cert_info(m.cert_file)
        if not args.force and not needs_renewal(info, time.time(), args.renew_days):
            echo(f"{m.cert_file}: {info.days_left(time.time()):.0f} days left; nothing to do")
            return 0
        done = renew(cert_file=m.cert_file, key_file=m.key_file, ca_file=m.ca_file,
                     center_url=args.center, center_ca=args.center_ca)
    except (EnrollError, OSError, ValueError) as exc:
        echo(f"renewal failed: {exc}")
        return EXIT_FAILED
    left = (done.not_after - time.time()) / 86400
    echo(f"renewed: serial {done.serial}, {left:.0f} days left; the gateway uses it from its "
         "next connection")
    return 0
