"""The ``ecg-gateway`` command.

Subcommands import their heavy modules lazily so that ``--help`` and
``--version`` answer instantly on a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gateway import __version__

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h: systemd shows it as "configuration error"

_DESCRIPTION = """\
ecg-gateway bridges ECG devices (Bluetooth LE chest patches, serial stress-test
carts) and a 24-hour cardiac monitoring center over MQTT: live ECG, periodic
rhythm strips and post-symptom event strips (HL7 FHIR Observations), delivered
through a durable outbox. It records tracings and facts; it never interprets.
"""


_HELP = {
    "run": (
        "run the gateway with a configuration file (what the systemd unit starts)",
        "Connect to the configured devices, process their ECG and publish it to the "
        "configured broker until stopped (SIGTERM/SIGINT). Refuses to start (exit 78) on "
        "any configuration error and on anything 'config check' finds (credentials, state "
        "directory), printing each problem with its key path. Files it creates are "
        "readable by its own user only.",
    ),
    "demo": (
        "all on one machine: simulated BLE patch and serial cart, gateway, broker, monitor",
        "Runs a simulated chest patch over a virtual Bluetooth LE link (bleak over "
        "bumble, our patch profile with backfill), a simulated stress-test cart on a real "
        "pseudo-terminal, the full gateway and the monitor. The patient's symptom button is "
        "pressed about 10 s in. Exits 0 when live ECG, a strip per device and the "
        "post-symptom event all arrived, with a summary.",
    ),
    "recordings": (
        "list the full recordings kept on this gateway (WFDB), with what is missing",
        "Lists every record under <state_dir>/recordings (or DIR): device, start (UTC), "
        "duration, samples never received, and what was sent to the center and confirmed "
        "(full disclosure). Read them with any WFDB tool or 'ecg-gateway analyze'.",
    ),
    "config": (
        "check a configuration file and what 'run' needs, or print the JSON schema",
        "'check FILE' validates a configuration and makes every check 'run' makes before "
        "it starts (MQTT credentials and their file modes, the state directory, serial "
        "ports), printing every problem with its key path; exit 0 means the service will "
        "start, 78 that it will not. Under sudo the files are checked as the service user "
        "(ecg-gateway) sees them. 'schema' prints the JSON schema of the configuration.",
    ),
    "monitor": (
        "subscribe like a monitoring center: print events, save strips as PNG",
        "Subscribes to every gateway's status, rhythm strips and post-symptom events, "
        "prints each as it arrives (events marked ***), and with --out saves each strip "
        "as a PNG on ECG paper (25 mm/s, 10 mm/mV) plus its JSON. Ctrl-C prints a "
        "summary and exits.",
    ),
}
"""Each subcommand's one-line summary (for --help) and its own description."""


def subcommand(
    sub: argparse._SubParsersAction, name: str, func: Callable
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (texts from ``_HELP``) running ``func``."""
    summary, text = _HELP[name]
    p = sub.add_parser(name, help=summary, description=text)
    p.set_defaults(func=func)
    return p


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = subcommand(sub, "run", _cmd_run)
    p.add_argument(
        "--config", "-c", type=Path, required=True, help="TOML file (see config/example.toml)"
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = subcommand(sub, "demo", _cmd_demo)
    p.add_argument("--seconds", type=float, default=30.0, help="how long to run (default 30)")
    p.add_argument(
        "--broker",
        metavar="mqtt://HOST:PORT",
        help="use this broker instead of starting an embedded one on a free loopback port",
    )
    p.add_argument("--out", type=Path, default=None, help="save strips as PNG + JSON here")
    p.add_argument(
        "--hold",
        action="store_true",
        help="after the summary keep everything running (console up) until Ctrl-C",
    )
    p.add_argument(
        "--patch-record",
        type=Path,
        metavar="WFDB",
        help="the patch replays this WFDB record (path without extension, e.g. an MIT-BIH "
        "record) instead of a synthetic ECG",
    )
    p.add_argument(
        "--patch-record-from",
        type=float,
        default=0.0,
        metavar="S",
        help="start the replay this many seconds into the record (default 0)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="the patch's signal runs this much faster than real time (default 1)",
    )


def _add_monitor(sub: argparse._SubParsersAction) -> None:
    from gateway import monitor

    monitor.add_parser(sub)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    from gateway import analyze

    analyze.add_parser(sub)


def _add_recordings(sub: argparse._SubParsersAction) -> None:
    p = subcommand(sub, "recordings", _cmd_recordings)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", "-c", type=Path, help="the gateway's TOML configuration")
    where.add_argument("--dir", type=Path, help="a recordings directory")


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = subcommand(sub, "config", _cmd_config)
    csub = p.add_subparsers(dest="config_cmd", required=True)
    c = csub.add_parser(
        "check", help="validate a configuration and everything 'run' checks (exit 78: it won't)"
    )
    c.add_argument("file", type=Path)
    c.add_argument(
        "--as-user",
        metavar="USER",
        help="check the files as USER sees them (needs root; under sudo the default is "
        "the service user, ecg-gateway)",
    )
    csub.add_parser("schema", help="print the configuration JSON schema")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-gateway",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ecg-gateway {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(sub)
    _add_demo(sub)
    _add_monitor(sub)
    _add_analyze(sub)
    _add_recordings(sub)
    _add_config(sub)
    _add_provision(sub)  # issue #14
    _add_doctor(sub)  # issue #14
    return parser


def _cmd_config(args: argparse.Namespace) -> int:
    if args.config_cmd == "schema":
        from gateway.config import GatewayConfig

        print(json.dumps(GatewayConfig.model_json_schema(), indent=2))
        return EXIT_OK
    from gateway import preflight

    user = preflight.user_to_check_as(args.as_user)
    if user is None:
        report = preflight.check_config_file(args.file)
    else:
        report = preflight.check_as_user(args.file, user)
    lines = "".join(f"\n  {p}" for p in report.problems)
    if report.fatal:
        print(
            f"{args.file}: the gateway will not start (checked as {report.checked_as}):{lines}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    print(f"{args.file}: OK — {report.summary} (checked as {report.checked_as}){lines}")
    return EXIT_OK


def _cmd_recordings(args: argparse.Namespace) -> int:
    from gateway.recording import summarize_records

    root = args.dir
    if args.config is not None:
        from gateway.config import ConfigError, load_config

        try:
            root = load_config(args.config).gateway.state_dir / "recordings"
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
    records = summarize_records(root)
    if not records:
        print(f"no recordings under {root}")
        return EXIT_OK
    upload = _upload_states(Path(root).parent / "upload.sqlite3")
    columns = f"{'duration':>9} {'missing':>9} {'center':<16}"
    print(f"{'device':<16} {'start (UTC)':<24} {columns} record")
    for r in records:
        heard = r.samples - r.before_first  # from the stream's first sample received
        h, rest = divmod(round(heard / r.fs if r.fs else 0.0), 3600)
        missing = f"{100 * r.missing / heard:.2f} %" if heard > 0 else "-"
        rel = r.path.relative_to(Path(root) / r.device_id) if r.path.is_relative_to(root) else None
        center = upload.get(f"{r.device_id}/{rel}", "-")
        print(
            f"{r.device_id:<16} {r.start_utc:<24} {h:>3}:{rest // 60:02d}:{rest % 60:02d} "
            f"{missing:>9} {center:<16} {r.path}"
        )
    return EXIT_OK


def _enable_faulthandler() -> None:
    """A watchdog abort (systemd sends SIGABRT) prints every thread's stack to the journal:
    where the event loop was stuck."""
    if not faulthandler.is_enabled():
        # stderr without a file descriptor (captured): no stacks, nothing else changes
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            faulthandler.enable()


def _upload_states(path: Path) -> dict[str, str]:
    """Record key -> "v2 confirmed" / "v1 sent" / "v1 sending 3/28" (full disclosure)."""
    import sqlite3

    from gateway.upload import RecordState

    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        states = [RecordState.from_json(json.loads(r[0])) for r in db.execute(
            "SELECT state FROM records")]  # fmt: skip
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    out = {}
    for st in states:
        if st.version == 0:
            continue
        word = "confirmed" if st.confirmed else "sent" if st.sent else (
            f"sending {st.next_chunk}/{st.chunks}")  # fmt: skip
        out[st.key] = f"v{st.version} {word}"
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    # outbox, recordings, study records: this user's only, whoever starts the gateway
    umask = os.umask(0o077)
    try:
        return _run(args.config)
    finally:
        os.umask(umask)  # (for callers in the same process, e.g. tests)


def _run(path: Path) -> int:
    _enable_faulthandler()
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"ecg-gateway: refusing to start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from gateway.preflight import check_before_run

    problems = check_before_run(cfg)
    for p in problems:
        if not p.fatal:
            logging.getLogger("gateway.preflight").warning("%s: %s", p.where, p.text)
    if any(p.fatal for p in problems):
        lines = "".join(f"\n  {p}" for p in problems if p.fatal)
        print(f"ecg-gateway: refusing to start ({path}):{lines}", file=sys.stderr)
        return EXIT_CONFIG
    from gateway.app import run_gateway

    return asyncio.run(run_gateway(cfg))


def _cmd_demo(args: argparse.Namespace) -> int:
    try:
        from sim.demo import demo_from_args
    except ImportError as exc:  # bumble is not installed: the demo's extra is missing
        print(
            f"ecg-gateway demo needs the simulators: pip install 'ecg-gateway[demo]' ({exc})",
            file=sys.stderr,
        )
        return EXIT_FAILED

    try:
        return asyncio.run(demo_from_args(args))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130


# --- fleet provisioning (issue #14): provision, doctor ----------------------------------------


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this gateway: Bluetooth, groups, devices, broker, certificate, clock, disk",
        description="Runs every check a field engineer needs (BlueZ and the adapter, the "
        "bluetooth/dialout groups, each configured device seen, the broker and TLS, the "
        "certificate's days left, clock sync, disk against the quotas, outbox backlog, state "
        "directory permissions, the systemd unit) and prints OK / WARN / FAIL with one line "
        "on how to fix each. Exits 1 on any FAIL.",
    )
    p.add_argument("--config", "-c", type=Path, required=True, help="the gateway's TOML file")
    p.add_argument("--json", action="store_true", help="results as JSON (scripts)")
    p.add_argument("--scan-seconds", type=float, default=4.0, help="BLE scan length (4 s)")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.doctor import doctor

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(doctor(cfg, as_json=args.json, scan_s=args.scan_seconds))


def _add_provision(sub: argparse._SubParsersAction) -> None:
    from gateway.provision import add_command

    add_command(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
