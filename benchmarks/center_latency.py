"""Latency from an event published to its row visible in the open console (a real browser).

Usage::

    python3 benchmarks/center_latency.py [--events 200] [--markdown FILE]

``ecg-center serve`` (SQLite) and a local mosquitto; headless Chromium logged in on the
queue page. A MutationObserver in the page stamps (``Date.now()``, the same clock as
Python's ``time.time()``) the moment each row appears; the publisher stamps each event just
before publishing it (QoS 1; one event every 150 ms). The path measured: broker → center
(batch, commit, PUBACK) → server-sent event → the page fetches the queue → row drawn.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.center_common import REPO, Serve, machine, start_broker
from tests.center import browser
from tests.center.publisher import LightPublisher, make_messages

OBSERVER = """
window.seenAt = {};
const mark = () => { for (const tr of document.querySelectorAll('#rows tr'))
  if (!(tr.dataset.msgId in window.seenAt)) window.seenAt[tr.dataset.msgId] = Date.now(); };
mark();
new MutationObserver(mark).observe(document.getElementById('rows'), {childList: true});
"""


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--gap-s", type=float, default=0.15)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="center-latency-"))
    broker = start_broker(work / "mosquitto")
    cfg = work / "center.toml"
    cfg.write_text(f'[mqtt]\nurl = "{broker.url}"\ninsecure = true\nclient_id = "lat"\n'
                   f'[db]\nurl = "sqlite:///{work}/c.db"\n[web]\nlisten = "127.0.0.1:0"\n'
                   'page_size = 500\n[auth]\ncookie_secure = false\n')
    subprocess.run([sys.executable, "-m", "center", "user", "add", "bench", "--role",
                    "technician", "--config", str(cfg)], input="benchmark password", text=True,
                   cwd=REPO, check=True, capture_output=True)
    serve = Serve(["--config", str(cfg)], work / "serve.log", web=True)
    driver = browser.start()
    pub = LightPublisher(broker.url)
    try:
        browser.login(driver, serve.url, "bench", "benchmark password")
        driver.execute_script(OBSERVER)
        sent: dict[str, float] = {}
        for topic, payload, msg_id, seq, kind, device in make_messages(
                1000, args.events, ("patch-event",)):
            sent[msg_id] = time.time() * 1000.0
            pub.publish(topic, payload, msg_id, seq, kind, device)
            time.sleep(args.gap_s)
        deadline = time.monotonic() + 30
        seen: dict[str, float] = {}
        while time.monotonic() < deadline and len(seen) < len(sent):
            seen = driver.execute_script("return window.seenAt;")
            time.sleep(0.2)
        reloaded = not driver.execute_script("return 'seenAt' in window;")
    finally:
        driver.quit()
        pub.close()
        serve.stop()
        broker.stop()
    lat = [seen[m] - t for m, t in sent.items() if m in seen]
    text = (f"Machine: {machine()}\n\n| events | seen | p50 ms | p90 ms | p99 ms | max ms |\n"
            f"|---|---|---|---|---|---|\n| {len(sent)} | {len(lat)} | "
            f"{statistics.median(lat):.0f} | {percentile(lat, 90):.0f} | "
            f"{percentile(lat, 99):.0f} | {max(lat):.0f} |")
    assert not reloaded
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if len(lat) == len(sent) else 1


if __name__ == "__main__":
    sys.exit(main())
