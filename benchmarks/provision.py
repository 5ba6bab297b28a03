"""Field provisioning (issue #14): time from a blank configuration to a verified test
transmission with scripted ``ecg-gateway provision``.

Usage::

    python3 benchmarks/provision.py [--runs 5] [--scan-seconds 5] [--markdown FILE]

On this machine: the center (in-process, SQLite, its own CA), mosquitto with TLS from that
CA and the per-gateway ACL of docs/broker.md, two of our patches and a Polar H10 advertising
on the bumble virtual radio, and a pty standing for a cart's USB-serial bridge — the same
set-up as tests/test_provision_e2e.py. Each run provisions a new gateway id from empty
directories: token issued by the center, key + CSR + signed certificate, BLE scan (the
``--scan-seconds`` a field engineer would use, included in the time), cart by USB id with
the udev rule, configuration validated and written, test transmission ping -> pong. The
clock runs from the call of ``run_provision`` to its return with the pong received; the
step times come from when each step's line is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_S = 60.0


async def _one(site, world, cart, root: Path, n: int, scan_s: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from gateway.cli import build_parser
    from gateway.provision import run_provision

    a, _b, polar = world.patches
    gw = f"gw-bench-{n:02d}"
    marks: list[tuple[float, str]] = []
    args = build_parser().parse_args([
        "provision", "--non-interactive", "--gateway-id", gw, "--center", site.center.url,
        "--token", site.token(gw), "--patch", f"patch-a={a.address}",
        "--patch", f"polar-1={polar.address}", "--cart", f"cart-1={cart.device}",
        "--config", str(root / gw / "gateway.toml"), "--tls-dir", str(root / gw / "tls"),
        "--state-dir", str(root / gw / "state"), "--udev-dir", str(root / gw / "udev"),
        "--scan-seconds", str(scan_s)])
    t0 = time.perf_counter()
    code = await run_provision(args, ble_backend=world.scanner, ports=[cart],
                               echo=lambda line: marks.append((time.perf_counter(), line)))
    total = time.perf_counter() - t0
    if code != 0:
        raise SystemExit("\n".join(m[1] for m in marks))

    def at(text: str) -> float:
        return next(t for t, line in marks if text in line) - t0

    ping = next(line for _, line in marks if "round trip" in line)
    rtt = float(ping.split("round trip ")[1].split(" ms")[0])
    return {"total_s": total, "enrolled_s": at("✓ certificate"),
            "scan_s": at("cart port") - at("scanning for patches"),
            "config_s": at("configuration written") - at("cart port"),
            "test_s": total - at("test transmission to the center"), "rtt_ms": rtt}


def _nodelay(e2e) -> None:  # type: ignore[no-untyped-def]
    """mosquitto with ``set_tcp_nodelay true`` (Nagle off on its sockets)."""
    write = e2e.CaBroker._write_config

    def with_nodelay(self, acl):  # type: ignore[no-untyped-def]
        write(self, acl)
        with self.conf_path.open("a") as f:
            f.write("set_tcp_nodelay true\n")

    e2e.CaBroker._write_config = with_nodelay


async def _main(runs: int, scan_s: float, nodelay: bool) -> list[dict[str, float]]:
    import tests.test_provision_e2e as e2e

    if nodelay:
        _nodelay(e2e)
    root = Path(tempfile.mkdtemp(prefix="provision-bench-"))
    site = e2e.Site(root / "site")
    site.broker.start()
    radio = e2e.sim_radio()
    world = await radio.__aenter__()
    master, slave = os.openpty()
    from serial.tools.list_ports_common import ListPortInfo

    cart = ListPortInfo(os.ttyname(slave), skip_link_detection=True)
    cart.vid, cart.pid, cart.serial_number = 0x0403, 0x6001, "CART42"
    results = []
    try:
        async with e2e.Center(site.config()) as center:
            site.center = center
            while not center.link.subscribed.is_set():
                await asyncio.sleep(0.05)
            for n in range(runs):
                results.append(await _one(site, world, cart, root, n, scan_s))
                print(f"run {n + 1}: {results[-1]['total_s']:.2f} s "
                      f"(ping round trip {results[-1]['rtt_ms']:.0f} ms)", flush=True)
    finally:
        site.broker.stop()
        os.close(master)
        os.close(slave)
        await radio.__aexit__(None, None, None)
    return results


def _table(results: list[dict[str, float]], scan_s: float, runs: int, nodelay: bool) -> str:
    def cell(key: str, fmt: str = "{:.2f}") -> str:
        vals = [r[key] for r in results]
        return f"{fmt.format(statistics.median(vals))} ({fmt.format(max(vals))})"

    cpu = platform.processor() or platform.machine()
    lines = [
        f"Command: `python3 benchmarks/provision.py --runs {runs} --scan-seconds {scan_s:g}"
        f"{' --nodelay' if nodelay else ''}`  ",
        f"Machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        "",
        "| step | median s (max) |",
        "| --- | --- |",
        f"| enrollment (key, CSR, token, signed certificate, HTTP) | {cell('enrolled_s')} |",
        f"| BLE scan (2 patches + Polar heard; scan length {scan_s:g} s) | {cell('scan_s')} |",
        f"| cart by USB id, udev rule, config validated and written | {cell('config_s')} |",
        f"| test transmission (TLS connect, ping, pong) | {cell('test_s')} |",
        f"| ping → pong round trip, ms | {cell('rtt_ms', '{:.0f}')} |",
        f"| **blank → verified, total** | **{cell('total_s')}** |",
        "",
        f"Goal: under {GOAL_S:.0f} s with the BLE scan — "
        + ("met." if max(r["total_s"] for r in results) < GOAL_S else "NOT met."),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scan-seconds", type=float, default=5.0)
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    ap.add_argument("--nodelay", action="store_true", help="mosquitto set_tcp_nodelay true")
    args = ap.parse_args()
    results = asyncio.run(_main(args.runs, args.scan_seconds, args.nodelay))
    table = _table(results, args.scan_seconds, args.runs, args.nodelay)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
