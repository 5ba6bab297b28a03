"""Footprint: peak resident memory of the running gateway with a cart and a patch.

    python3 benchmarks/footprint.py [--seconds 60] [--markdown FILE]

Three measurements, each in its own process, peak RSS read from /proc (VmHWM):

1. ``import gateway.app`` alone;
2. ``ecg-gateway run`` (the systemd unit's command) with a simulated cart streaming 12
   leads at 500 Hz on a pseudo-terminal (the cart runs in another process) and a patch
   configured on BlueZ (on a machine without a Bluetooth adapter its connections fail and
   are retried: the BLE stack is loaded, the patch's samples are not), publishing to
   mosquitto, for ``--seconds``;
3. the same gateway in one process with the patch streaming 250 Hz through the in-process
   bumble simulation (the demo's virtual radio), minus what importing the simulator alone
   costs (bumble is never loaded on a Pi).

Needs mosquitto (``/usr/sbin/mosquitto``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import header, publish  # noqa: E402


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def _python(code: str) -> float:
    """Peak RSS (MB) of a Python process that runs ``code`` and then reports its own."""
    full = code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", full], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return int(out.stdout.split()[-1]) / 1024


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, port: int, cart_port: str) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            [gateway]
            id = "footprint"
            state_dir = "{tmp / "state"}"
            [mqtt]
            url = "mqtt://127.0.0.1:{port}"
            insecure = true
            [[devices]]
            kind = "cart_serial"
            id = "cart-1"
            port = "{cart_port}"
            [[devices]]
            kind = "patch"
            id = "patch-1"
            address = "E0:00:00:00:00:01"
            [strips]
            period_s = 15.0
            """
        )
    )
    return cfg


_CART = """
import asyncio, sys
from sim.cart import SimCart
async def main():
    async with SimCart(speed=1.0) as cart:
        print(cart.port, flush=True)
        await asyncio.sleep(1e6)
asyncio.run(main())
"""

_IN_PROCESS = """
import asyncio, sys, tempfile
from pathlib import Path
from gateway.app import Gateway
from gateway.config import parse_config
from sim.bumble_backend import SimBleWorld
from sim.patch import SimPatch
async def main(port, cart_port, seconds):
    world = SimBleWorld()
    async with SimPatch(world) as patch:
        tmp = Path(tempfile.mkdtemp())
        cfg = parse_config({
            "gateway": {"id": "fp2", "state_dir": str(tmp)},
            "mqtt": {"url": f"mqtt://127.0.0.1:{port}", "insecure": True},
            "devices": [
                {"kind": "cart_serial", "id": "cart-1", "port": cart_port},
                {"kind": "patch", "id": "patch-1", "address": patch.address},
            ],
            "strips": {"period_s": 15.0},
        })
        gw = Gateway(cfg, ble_backend=world.backend(), adapter_reset=world.reset_adapter)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        await asyncio.sleep(seconds)
        print("patch samples", gw.channels["patch-1"].counters["samples"], file=sys.stderr)
        stop.set()
        await task
asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
"""


def measure(seconds: float) -> list[str]:
    lines = []
    tmp = Path(tempfile.mkdtemp())
    port = _free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    cart = subprocess.Popen(
        [sys.executable, "-c", _CART], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert cart.stdout is not None
        cart_port = cart.stdout.readline().strip()
        time.sleep(0.5)
        lines.append(f"| `import gateway.app` | {_python('import gateway.app'):.1f} MB |")
        gw = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "run",
                "--config",
                str(_config(tmp, port, cart_port)),
            ],
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        time.sleep(seconds)
        run_mb = _hwm_mb(gw.pid)
        gw.terminate()
        gw.wait(30)
        lines.append(
            f"| `ecg-gateway run`, cart streaming + patch on BlueZ (retrying), {seconds:g} s "
            f"| {run_mb:.1f} MB |"
        )
        both = subprocess.Popen(
            [sys.executable, "-c", _IN_PROCESS, str(port), cart_port, str(seconds)],
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        time.sleep(seconds - 1)
        both_mb = _hwm_mb(both.pid)
        _, err = both.communicate(timeout=60)
        sim_mb = _python("import bumble.device, bumble.gatt, bumble.controller, bumble.host")
        base_mb = _python("import sys")
        samples = [ln for ln in err.splitlines() if ln.startswith("patch samples")]
        lines.append(
            f"| same, patch streaming through the in-process bumble simulation "
            f"({samples[-1] if samples else 'patch samples ?'}) | {both_mb:.1f} MB |"
        )
        lines.append(
            f"| importing the simulator alone (bumble), over a bare interpreter "
            f"({base_mb:.1f} MB) | +{sim_mb - base_mb:.1f} MB |"
        )
        lines.append(
            f"| gateway with a streaming cart and a streaming patch, simulator subtracted "
            f"| **{both_mb - (sim_mb - base_mb):.1f} MB** |"
        )
    finally:
        for p in (cart, broker):
            p.terminate()
            p.wait(10)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    cores = os.cpu_count()
    table = ["| process | peak RSS (VmHWM) |", "| --- | --- |", *measure(args.seconds)]
    return publish([*header(f", {cores} cores"), "", *table], args.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
