"""``ecg-center``: serve, database migrations, staff accounts, configuration check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from center import __version__
from center.config import CenterConfig, ConfigError, load_config

__all__ = ["main"]

EX_CONFIG = 78
"""sysexits.h EX_CONFIG: refused to start on a bad configuration."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration (center/example.toml)")
    p.add_argument("--db", help="database URL: sqlite:///PATH or postgresql://...")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ecg-center", description=__doc__)
    ap.add_argument("--version", action="version", version=f"ecg-center {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="ingest from MQTT and serve the console")
    _common(serve)
    serve.add_argument("--broker", help="mqtts://HOST[:PORT] (mqtt:// needs --insecure)")
    serve.add_argument("--insecure", action="store_true", help="allow plaintext mqtt://")
    serve.add_argument("--listen", help="console HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--client-id", help="MQTT client id (one per serve process)")
    serve.add_argument("--share-group", help="shared-subscription group ('' for none)")
    serve.add_argument("--no-web", action="store_true", help="ingest only, no console")
    db = sub.add_parser("db", help="database migrations")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    _common(dbsub.add_parser("upgrade", help="migrate the database to the newest schema"))
    _common(dbsub.add_parser("current", help="print the database's schema revision"))
    user = sub.add_parser("user", help="staff accounts")
    usub = user.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="add a user; the password is read from stdin")
    _common(add)
    add.add_argument("name")
    add.add_argument("--role", choices=["technician", "supervisor"], required=True)
    report = sub.add_parser("report", help="write the PDF report of a long-term study")
    _common(report)
    report.add_argument("study", help="study id (as the console shows it)")
    report.add_argument("--out", type=Path, required=True, help="PDF file to write")
    export = sub.add_parser("export", help="export a whole study as EDF+ or WFDB (zip)")
    _common(export)
    export.add_argument("study", help="study id (as the console shows it)")
    export.add_argument("--format", choices=["edf", "wfdb"], required=True)
    export.add_argument("--out", type=Path, required=True, help=".edf or .zip file to write")
    check = sub.add_parser("config", help="configuration").add_subparsers(dest="cfg_command",
                                                                         required=True)
    check.add_parser("check", help="validate a configuration file").add_argument("file", type=Path)
    _fleet_parsers(sub)
    return ap


# --- fleet provisioning (issue #14): ca init / ca issue / enroll-token -----------------------


def _fleet_parsers(sub: argparse._SubParsersAction) -> None:
    ca = sub.add_parser("ca", help="the private CA that signs gateway, broker and center "
                        "certificates").add_subparsers(dest="ca_command", required=True)
    init = ca.add_parser("init", help="create the CA (ca.pem, ca.key 0600)")
    init.add_argument("--dir", type=Path, required=True, help="e.g. /etc/ecg-center/ca")
    init.add_argument("--name", default="ECG monitoring CA", help="the CA's CN")
    init.add_argument("--days", type=float, default=3650.0, help="validity (default 3650)")
    issue = ca.add_parser("issue", help="a key and certificate made here: the broker's "
                          "(--server) or the center's own MQTT client certificate")
    issue.add_argument("cn", help="CN: the broker's host name, or the center's MQTT user")
    issue.add_argument("--dir", type=Path, required=True, help="the CA directory")
    issue.add_argument("--out", type=Path, required=True, help="where <cn>.pem/.key go")
    issue.add_argument("--server", action="store_true", help="serverAuth (the broker)")
    issue.add_argument("--san", action="append", default=[], help="DNS name or IP (repeat)")
    issue.add_argument("--days", type=float, default=825.0)
    revoke = ca.add_parser("revoke", help="revoke every certificate of a gateway (lost, stolen "
                           "or retired Pi) and rewrite the CRL (crl.pem) the broker checks")
    revoke.add_argument("gateway", help="the gateway id (its certificates' CN)")
    crl = ca.add_parser("crl", help="rewrite the CRL (crl.pem in the CA directory)")
    for p in (revoke, crl):
        _common(p)
        p.add_argument("--dir", type=Path, help="the CA directory (default [enroll] ca_dir)")
    tok = sub.add_parser("enroll-token", help="a one-time enrollment token for one gateway id")
    _common(tok)
    tok.add_argument("--gateway", required=True, help="the gateway id (its certificate's CN)")
    tok.add_argument("--ttl", type=float, help="validity, s (default [enroll] token_ttl_s)")
    tok.add_argument("--json", action="store_true", help="print JSON (scripts)")


def _ca(cfg: CenterConfig, args: argparse.Namespace) -> int:
    from center.ca import CaError, init_ca, issue_pair, load_ca

    try:
        if args.ca_command in ("revoke", "crl"):
            return _revoke(cfg, args)
        if args.ca_command == "init":
            ca = init_ca(args.dir, name=args.name, days=args.days)
            print(f"CA created in {args.dir}: ca.pem (give it to the broker and gateways), "
                  f"ca.key (0600, keep it here), valid to {ca.cert.not_valid_after_utc:%Y-%m-%d}")
            return 0
        cert, key = issue_pair(load_ca(args.dir), args.cn, args.out, server=args.server,
                               sans=args.san or None, days=args.days)
    except CaError as exc:
        print(f"ecg-center: {exc}", file=sys.stderr)
        return 1
    print(f"issued {cert} and {key} (0600)")
    return 0


def _revoke(cfg: CenterConfig, args: argparse.Namespace) -> int:
    """``ca revoke GATEWAY`` / ``ca crl``: the database first, then the CRL from it."""
    import os

    from center.ca import CaError
    from center.revoke import refresh_crl, revoke_and_publish
    from center.store.db import open_engine, upgrade

    directory = args.dir or cfg.enroll.ca_dir
    if directory is None:
        raise CaError("no CA directory: give --dir or set [enroll] ca_dir")
    engine = open_engine(cfg.db.url)
    upgrade(engine)
    now = time.time()
    if args.ca_command == "revoke":
        serials, path = revoke_and_publish(engine, args.gateway, directory, now,
                                           actor=os.environ.get("USER"))
        print(f"gateway {args.gateway}: {len(serials)} certificate(s) revoked"
              + (f" ({', '.join(serials)})" if serials else " (none left unrevoked)"))
    else:
        path = refresh_crl(engine, directory, now)
    print(f"CRL written to {path}: reload the broker to apply it "
          "(systemctl reload mosquitto; docs/broker.md)")
    return 0


def _enroll_token(cfg: CenterConfig, args: argparse.Namespace) -> int:
    import json

    from center.enroll import issue_token
    from center.store.db import open_engine, upgrade, writer
    from center.timefmt import iso

    engine = open_engine(cfg.db.url)
    upgrade(engine)
    ttl = args.ttl if args.ttl is not None else cfg.enroll.token_ttl_s
    try:
        with writer(engine) as conn:
            token, expires = issue_token(conn, args.gateway, ttl_s=ttl, now=time.time())
    except ValueError as exc:
        print(f"ecg-center: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"gateway": args.gateway, "token": token, "expires_at": iso(expires)}))
    else:
        print(f"enrollment token for gateway {args.gateway} (one use, valid until "
              f"{iso(expires)}):\n{token}")
    return 0


def _config(args: argparse.Namespace) -> CenterConfig:
    overrides: dict[str, dict] = {}
    if getattr(args, "db", None):
        overrides.setdefault("db", {})["url"] = args.db
    if getattr(args, "broker", None):
        overrides.setdefault("mqtt", {})["url"] = args.broker
    if getattr(args, "insecure", False):
        overrides.setdefault("mqtt", {})["insecure"] = True
    if getattr(args, "client_id", None):
        overrides.setdefault("mqtt", {})["client_id"] = args.client_id
    if getattr(args, "share_group", None) is not None:
        overrides.setdefault("mqtt", {})["share_group"] = args.share_group
    if getattr(args, "listen", None):
        overrides.setdefault("web", {})["listen"] = args.listen
    return load_config(getattr(args, "config", None), overrides)


async def _serve(cfg: CenterConfig, web: bool) -> int:
    from center.app import Center

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Center(cfg, web=web) as center:
        if cfg.enroll.ca_dir is not None:
            _crl_at_start(center.engine, cfg.enroll.ca_dir)
        if center.url:
            print(f"ecg-center: console at {center.url}", flush=True)
        await stop.wait()
    return 0


def _crl_at_start(engine: Any, directory: Path) -> None:
    """A fresh CRL at every start, so the one the broker loads next is never near its
    nextUpdate (a CA that cannot be read is only a warning here: enrollment says more)."""
    from center.ca import CaError
    from center.revoke import refresh_crl

    try:
        path = refresh_crl(engine, directory, time.time())
    except (CaError, OSError) as exc:
        logging.getLogger("center").warning("CRL not written: %s", exc)
        return
    logging.getLogger("center").info("CRL written to %s", path)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("ecg-center: passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _user_add(cfg: CenterConfig, name: str, role: str) -> int:
    from center.auth import AuthError, add_user
    from center.store.db import open_engine, upgrade, writer

    engine = open_engine(cfg.db.url)
    upgrade(engine)
    try:
        with writer(engine) as conn:
            add_user(conn, name, role, _read_password(), time.time())
    except AuthError as exc:
        print(f"ecg-center: {exc}", file=sys.stderr)
        return 1
    print(f"user {name} added ({role})")
    return 0


def _db(cfg: CenterConfig, command: str) -> int:
    from center.store.db import current_revision, open_engine, upgrade

    engine = open_engine(cfg.db.url)
    rev = upgrade(engine) if command == "upgrade" else current_revision(engine)
    print(f"database at revision {rev or 'none (empty)'}")
    return 0


def _study_file(cfg: CenterConfig, command: str, args: argparse.Namespace) -> int:
    """``report`` and ``export``: one study to a file (scanning analysis already stored)."""
    from center.store.db import open_engine, upgrade
    from center.studies.read import NotFound

    engine = open_engine(cfg.db.url)
    upgrade(engine)
    try:
        if command == "report":
            from center.report import build_report

            build_report(engine, args.study, args.out)
        else:
            from center.studies.export import export_edf, export_wfdb

            with engine.connect() as conn:
                (export_edf if args.format == "edf" else export_wfdb)(conn, args.study, args.out)
    except NotFound:
        print(f"ecg-center: no study {args.study!r}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(f"{args.out}: written")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ecg-center``; the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "config":
            load_config(args.file)
            print(f"{args.file}: ok")
            return 0
        cfg = _config(args)
    except ConfigError as exc:
        print(f"ecg-center: {exc}", file=sys.stderr)
        return EX_CONFIG
    logging.basicConfig(level=cfg.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.command == "ca":
        return _ca(cfg, args)
    if args.command == "enroll-token":
        return _enroll_token(cfg, args)
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_serve(cfg, web=not args.no_web))
        return 0
    if args.command == "db":
        return _db(cfg, args.db_command)
    if args.command in ("report", "export"):
        return _study_file(cfg, args.command, args)
    return _user_add(cfg, args.name, args.role)
