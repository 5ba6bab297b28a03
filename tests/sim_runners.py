"""Test-only processes for the study end-to-end test: a simulated patch and a real gateway.

    python3 -m tests.sim_runners patch --speed 20 --memory-s 120
    python3 -m tests.sim_runners gateway CONFIG.json --hci-port PORT --speed 20 --t0 T0

**patch**: a :class:`~sim.patch.SimPatch` on its own simulated air, reachable from other
processes over HCI on loopback TCP (:class:`~sim.hci_bridge.HciServer`). It prints one JSON
line ``{"port", "address", "t0"}`` (``t0``: UTC of sample 0 by the patch's clock), then
answers one JSON line per command read on stdin:

- ``disconnect``: the patch drops the link (it keeps recording; the gateway backfills);
- ``away S``: out of range for S simulated seconds (the link drops, nobody can connect);
- ``seq``: ``{"seq": next sample number, "connected": bool}``;
- ``dump PATH``: every sample recorded so far (µV, int32, by sample number) to ``PATH``
  (``.npy``); ``{"seq": n}``;
- ``quit``.

Its memory lives in this process, so it survives a ``kill -9`` of the gateway, as a real
patch's does.

**gateway**: :class:`gateway.app.Gateway` on ``CONFIG.json`` (the gateway's configuration as
JSON) with the bleak backend on that remote air, run like ``ecg-gateway run`` (until
SIGTERM). The patch runs ``speed`` times faster than real time, and so does the gateway's
clock: ``t0 + speed * (now - t0)`` with ``t0`` the patch's, so the patch's Device Time,
the gateway's clock tracking, record times and the upload's settle time agree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

__all__ = ["main"]


async def _patch(args: argparse.Namespace) -> None:
    import numpy as np

    from sim.bumble_backend import SimBleWorld
    from sim.hci_bridge import HciServer
    from sim.patch import SimPatch

    world = SimBleWorld()
    patch = SimPatch(world, speed=args.speed, memory_s=args.memory_s, seed=args.seed)
    async with patch, HciServer(world) as server:
        say = {"port": server.port, "address": patch.address, "t0": patch.started_utc}
        print(json.dumps(say), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            cmd, _, arg = line.partition(" ")
            if cmd == "quit":
                break
            if cmd == "disconnect":
                await patch.disconnect()
            elif cmd == "away":
                await patch.go_away(float(arg))
            elif cmd == "dump":
                np.save(arg, patch.recorded)
            print(json.dumps({"seq": patch.next_seq, "connected": patch.connected}), flush=True)


async def _gateway(args: argparse.Namespace) -> None:
    from gateway.app import Gateway
    from gateway.config import parse_config
    from sim.hci_bridge import RemoteBleWorld

    cfg = parse_config(json.loads(Path(args.config).read_text()), source=args.config)
    world = RemoteBleWorld(args.hci_port)
    t0, speed = args.t0, args.speed
    gateway = Gateway(
        cfg,
        ble_backend=world.backend(),
        adapter_reset=world.reset_adapter,
        clock=lambda: t0 + speed * (time.time() - t0),
        device_time_scale=speed,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await gateway.run(stop)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m tests.sim_runners")
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("patch")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--memory-s", type=float, default=3600.0)
    p.add_argument("--seed", type=int, default=1)
    g = sub.add_parser("gateway")
    g.add_argument("config")
    g.add_argument("--hci-port", type=int, required=True)
    g.add_argument("--speed", type=float, default=1.0)
    g.add_argument("--t0", type=float, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_patch(args) if args.what == "patch" else _gateway(args))


if __name__ == "__main__":
    main()
