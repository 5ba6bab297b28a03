"""Outbox throughput: durable and batched enqueue, and drain to a local mosquitto at QoS 1.

Usage::

    python3 benchmarks/outbox.py [--messages 5000] [--markdown FILE]

Each message is a real 10 s, 130 Hz single-lead strip body (FHIR Observation
inside the envelope, about 3 KB). Enqueue: ``Outbox.put`` (one commit and fsync
per message, what events get) and ``Outbox.put_many`` in batches of 100. Drain:
the gateway's Publisher (paho, MQTT v5, QoS 1, in-flight window 100) to a
mosquitto started on a free loopback port; the clock stops when the outbox is
empty, i.e. every message was acknowledged by the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from core.block import SampleBlock
from gateway.config import MqttConfig
from gateway.mqtt import Publisher
from gateway.outbox import Outbox
from gateway.payloads import build_strip_body
from gateway.pipeline import StripFacts, Trigger
from sim.synth import EcgSynth


def strip_body() -> dict:
    x = EcgSynth(130.0, ("ECG",), seed=1).generate(1300)
    block = SampleBlock(x, 130.0, 1.79e9, 0, ("ECG",), "p1")
    return build_strip_body(
        block,
        gateway_id="gw",
        kind="strip",
        trigger=Trigger("periodic", pre_s=10.0),
        facts=StripFacts(),
        gaps=[],
        created=1.79e9,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def drain(db: Path, port: int) -> float:
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{port}", insecure=True, inflight=100)
    with Outbox(db) as ob:
        t0 = time.perf_counter()
        async with Publisher(cfg, "bench-gw", ob):
            while ob.pending():
                await asyncio.sleep(0.01)
        return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    n = args.messages
    body = strip_body()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        with Outbox(d / "durable.sqlite3") as ob:
            t0 = time.perf_counter()
            for _ in range(n):
                ob.put("event", "p1", "ecg/v1/gw/p1/event", dict(body))
            dt = time.perf_counter() - t0
        rows.append(f"| enqueue, durable (`put`, one commit each) | {n} | {n / dt:,.0f} |")
        db = d / "batched.sqlite3"
        with Outbox(db) as ob:
            t0 = time.perf_counter()
            for i in range(0, n, 100):
                batch = [("strip", "p1", "ecg/v1/gw/p1/strip", dict(body)) for _ in range(100)]
                ob.put_many(batch[: n - i])
            dt = time.perf_counter() - t0
        rows.append(f"| enqueue, batched (`put_many`, 100 per commit) | {n} | {n / dt:,.0f} |")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        port = free_port()
        conf = d / "m.conf"
        extra = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{extra}")
        broker = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            dt = asyncio.run(drain(db, port))
        finally:
            broker.terminate()
            broker.wait()
        rows.append(f"| drain to mosquitto, QoS 1, acknowledged | {n} | {n / dt:,.0f} |")
    size = len(str(body))
    return report.publish(
        [
            *report.header(
                f", {os.cpu_count()} cores, SQLite WAL synchronous=FULL; message ≈ {size} bytes."
            ),
            "",
            "| operation | messages | messages/s |",
            "|---|---|---|",
            *rows,
        ],
        args.markdown,
    )


if __name__ == "__main__":
    raise SystemExit(main())
