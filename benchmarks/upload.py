"""Full-disclosure upload (issue #13): throughput, and an event's delay while records upload.

Usage::

    python3 benchmarks/upload.py [--records 20] [--events 50] [--cap-kb 64]

A mosquitto on a free loopback port; the gateway's Publisher and Uploader (64 KiB chunks,
records' share 2 of 20 in-flight slots) over 250 Hz one-lead records of 1 hour (1.8 MB
each) written by the RecordingStore. A subscriber confirms nothing (throughput only).

- throughput: bytes of signal delivered per second, uncapped and at ``--cap-kb`` KB/s;
- event delay: an event committed to the outbox every 200 ms, its time from ``put`` to
  arrival at a subscriber, p50/p99 over ``--events`` events, with no upload, and while
  the records upload uncapped and capped.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.block import SampleBlock
from gateway.config import MqttConfig
from gateway.mqtt import Publisher
from gateway.outbox import Outbox
from gateway.recording import RecordingStore
from gateway.upload import UploadSettings
from gateway.upload_io import Uploader
from gateway.upload_rate import KindLimit, TokenBucket
from tests.support import free_port


def _broker(tmp: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = tmp / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, port


class Arrivals:
    """A paho subscriber noting when each message arrived (monotonic s), by topic kind."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.events: dict[str, float] = {}
        self.record_bytes = 0
        self.first = self.last = 0.0
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, *a: c.subscribe("bench/#", qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.ready.wait(5)

    def _on(self, client, userdata, msg) -> None:
        if msg.topic.endswith("/event"):
            self.events[msg.payload.decode().split('"n":')[1].split(",")[0]] = time.monotonic()
        elif msg.topic.endswith("/record"):
            self.last = time.monotonic()
            self.first = self.first or self.last
            self.record_bytes += len(msg.payload)


def _records(root: Path, n: int) -> int:
    store = RecordingStore(root / "p1", "p1", file_s=3600.0)
    x = np.random.default_rng(1).normal(0, 0.3, (int(3600 * 250), 1))
    for h in range(n):
        for a in range(0, len(x), 250 * 60):
            seq = h * len(x) + a
            store.write(SampleBlock(x[a : a + 250 * 60], 250.0, 1.7e9 + seq / 250, seq, ("ECG",)))
    store.close()
    return sum(p.stat().st_size for p in (root / "p1").glob("*.dat"))


async def _run(port: int, tmp: Path, cap: float | None, upload: bool, events: int) -> dict:
    state = tmp / f"state-{cap}-{upload}"
    shutil.copytree(tmp / "recordings", state / "recordings")
    arr = Arrivals(port)
    outbox = Outbox(state / "outbox.sqlite3")
    bucket = TokenBucket(cap, max(cap, 131072)) if cap else None
    cfg = MqttConfig(url=f"mqtt://127.0.0.1:{port}", insecure=True, topic_prefix="bench")
    async with Publisher(cfg, "gw", outbox, limits={"record": KindLimit(2, bucket)}) as pub:
        up = Uploader(state / "recordings", state / "upload.sqlite3", outbox, gateway_id="gw",
                      topic_prefix="bench", settings=UploadSettings(settle_s=0, quiet_s=0),
                      file_s=3600.0, queued_chunks=4, poll_s=0.02, wake=pub.wake)  # fmt: skip
        task = asyncio.create_task(up.run()) if upload else None
        await asyncio.sleep(0.5)
        put_at = {}
        for i in range(events):
            put_at[str(i)] = time.monotonic()
            outbox.put("event", "p1", "bench/gw/p1/event", {"n": i, "pad": "x" * 3000})
            pub.wake()
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        rate = arr.record_bytes / max(arr.last - arr.first, 1e-6) if arr.record_bytes else 0.0
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        up.close()
    outbox.close()
    arr.c.disconnect()
    delays = sorted(1000 * (arr.events[k] - t) for k, t in put_at.items() if k in arr.events)
    return {"wire_kb_s": rate / 1000, "p50": statistics.median(delays),
            "p99": delays[int(0.99 * (len(delays) - 1))], "n": len(delays)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=4)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--cap-kb", type=float, default=64.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    size = _records(tmp / "recordings", args.records)
    proc, port = _broker(tmp)
    try:
        print(f"{args.records} records, {size / 1e6:.1f} MB of signal")
        for label, cap, upload in (
            ("no upload", None, False),
            ("uncapped", None, True),
            (f"cap {args.cap_kb:g} KB/s", args.cap_kb * 1000, True),
        ):
            r = asyncio.run(_run(port, tmp, cap, upload, args.events))
            print(f"{label:>16}: records {r['wire_kb_s']:8.1f} KB/s on the wire; event delay p50 "
                  f"{r['p50']:6.1f} ms, p99 {r['p99']:6.1f} ms ({r['n']} events)")  # fmt: skip
    finally:
        proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
