"""End to end: a symptom-button press on the simulated patch → the event on the console.

Usage::

    python3 benchmarks/press_to_screen.py [--presses 10] [--markdown FILE]

The whole chain on this machine: a simulated patch (bumble GATT server on the virtual BLE
link, 250 Hz, 200 ms notifications) read by the gateway's own driver, the gateway
(pipeline, outbox, MQTT publisher) in this process, a local mosquitto, ``ecg-center serve``
(SQLite) in its own process, headless Chromium logged in on the queue page. Each press's
event window is 5 s before to 5 s after it. A MutationObserver stamps each row's appearance
(``Date.now()``, the same clock as ``time.time()``); the latency is measured from the end of
the event's post window (press + 5 s, when the last sample of the event exists on the
patch) to the row on screen. What it includes: the patch's notification of that sample,
the pipeline cutting the event, outbox commit, MQTT, the center's batch, commit and PUBACK,
the server-sent event, the page's fetch and drawing.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.center_common import REPO, Serve, machine, start_broker
from benchmarks.center_latency import OBSERVER, percentile
from tests.center import browser

POST_S = 5.0


def _gateway_config(broker_url: str, state: Path, address: str):  # type: ignore[no-untyped-def]
    from gateway.config import parse_config

    return parse_config({
        "gateway": {"id": "gw-e2e", "state_dir": str(state)},
        "mqtt": {"url": broker_url, "insecure": True, "keepalive_s": 10},
        "devices": [{"kind": "patch", "id": "patch-1", "address": address}],
        "strips": {"period_s": 3600.0, "duration_s": 10.0},
        "events": {"pre_s": 5.0, "post_s": POST_S},
        "auto_events": {"enabled": False},
    }, source="<benchmark>")


async def _run(args: argparse.Namespace, work: Path, broker_url: str, driver) -> dict:  # type: ignore[no-untyped-def]
    from gateway.app import Gateway
    from sim.bumble_backend import SimBleWorld
    from sim.patch import SimPatch

    world = SimBleWorld()
    async with SimPatch(world, hr_bpm=70.0, seed=4) as patch:
        gw = Gateway(_gateway_config(broker_url, work / "gw", patch.address),
                     ble_backend=world.backend(), adapter_reset=world.reset_adapter)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            while not gw.channels or gw.channels["patch-1"].counters["samples"] < 250 * 6:
                await asyncio.sleep(0.2)  # streaming, with more than the pre window held
            presses = []
            for _ in range(args.presses):
                presses.append(time.time())
                await patch.press_button()
                await asyncio.sleep(POST_S + args.gap_s)
            await asyncio.sleep(5.0)
            seen = await asyncio.to_thread(driver.execute_script, "return window.seenAt;")
        finally:
            stop.set()
            await task
    return {"presses": presses, "seen": seen}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presses", type=int, default=10)
    ap.add_argument("--gap-s", type=float, default=2.0, help="after each post window, s")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="press-to-screen-"))
    broker = start_broker(work / "mosquitto")
    cfg = work / "center.toml"
    cfg.write_text(f'[mqtt]\nurl = "{broker.url}"\ninsecure = true\nclient_id = "e2e"\n'
                   f'[db]\nurl = "sqlite:///{work}/c.db"\n[web]\nlisten = "127.0.0.1:0"\n'
                   '[auth]\ncookie_secure = false\n')
    subprocess.run([sys.executable, "-m", "center", "user", "add", "bench", "--role",
                    "technician", "--config", str(cfg)], input="benchmark password", text=True,
                   cwd=REPO, check=True, capture_output=True)
    serve = Serve(["--config", str(cfg)], work / "serve.log", web=True)
    driver = browser.start()
    try:
        browser.login(driver, serve.url, "bench", "benchmark password")
        driver.execute_script(OBSERVER)
        got = asyncio.run(_run(args, work, broker.url, driver))
    finally:
        driver.quit()
        serve.stop()
        broker.stop()
    con = sqlite3.connect(work / "c.db")
    rows = con.execute("SELECT msg_id, trigger_at FROM events WHERE trigger_type = 'button'")
    latencies = []
    for msg_id, trigger_at in rows:
        press = min(got["presses"], key=lambda p: abs(p - trigger_at))
        if msg_id in got["seen"] and abs(press - trigger_at) < 1.0:
            latencies.append(got["seen"][msg_id] - (press + POST_S) * 1000.0)
    lat = sorted(latencies)
    text = (f"Machine: {machine()}\n\n"
            "| presses | on screen | p50 ms | p90 ms | max ms |\n|---|---|---|---|---|\n"
            f"| {len(got['presses'])} | {len(lat)} | {statistics.median(lat):.0f} | "
            f"{percentile(lat, 90):.0f} | {max(lat):.0f} |")
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if len(lat) == len(got["presses"]) else 1


if __name__ == "__main__":
    sys.exit(main())
