"""Page load of the queue with 100,000 stored strips and events (SQLite).

Usage::

    python3 benchmarks/center_pageload.py [--events 100000] [--markdown FILE]

Fills a database with real recorded payloads (patch strips and events, ≈11-20 KB each,
under 1,000 gateway ids) through the ingest's own batch writer, then measures ``GET /`` (the
queue page with its first page of rows embedded) from a client on this machine, and the
whole page in headless Chromium (navigation start → load event, rows drawn), for two
states: most items acknowledged (1,000 open) and all 100,000 open.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.center_common import REPO, Serve, machine, start_broker
from center.messages import decode
from center.store.db import open_engine, upgrade, writer
from center.store.ingest_writer import write_batch
from tests.center import browser

DATA = REPO / "tests" / "center" / "data"


def fill(engine: sa.Engine, n: int) -> float:
    """``n`` items (9 strips per event) over the last day; seconds taken."""
    bases = []
    for name in ("patch-strip",) * 9 + ("patch-event",):
        body = json.loads((DATA / f"{name}.json").read_text())
        topic = f"ecg/v1/demo-gw/{body['device_id']}/{body['kind']}"
        bases.append(decode(topic, json.dumps(body).encode(), {}, "ecg/v1"))
    t0, now = time.perf_counter(), time.time()
    for start in range(0, n, 1000):
        batch = [dataclasses.replace(bases[i % 10], msg_id=str(uuid.uuid4()),
                                     gateway=f"gw-{i % 1000:04d}")
                 for i in range(start, min(n, start + 1000))]
        with writer(engine) as conn:
            write_batch(conn, batch, now - 86400 + 86400 * start / n)
    return time.perf_counter() - t0


def server_times(url: str, cookie: str, n: int = 30) -> list[float]:
    out = []
    for _ in range(n):
        req = urllib.request.Request(f"{url}/", headers={"Cookie": cookie})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req) as r:
            r.read()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def browser_times(driver, url: str, n: int = 10) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        driver.get(f"{url}/")
        nav = driver.execute_script(
            "const e = performance.getEntriesByType('navigation')[0];"
            "return [e.loadEventEnd, document.querySelectorAll('#rows tr').length];")
        assert nav[1] > 0
        out.append(float(nav[0]))
    return out


def p(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def measure(serve: Serve, driver, label: str) -> str:  # type: ignore[no-untyped-def]
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    srv = server_times(serve.url, cookie)
    brw = browser_times(driver, serve.url)
    return (f"| {label} | {statistics.median(srv):.0f} | {p(srv, 99):.0f} | "
            f"{statistics.median(brw):.0f} | {max(brw):.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="center-pageload-"))
    db = f"sqlite:///{work}/c.db"
    engine = open_engine(db)
    upgrade(engine)
    fill_s = fill(engine, args.events)
    size_mb = Path(f"{work}/c.db").stat().st_size / 1e6
    with writer(engine) as conn:  # the usual state: nearly everything acknowledged
        conn.execute(sa.text("UPDATE events SET state = 'acknowledged', acknowledged_by = "
                             "'night', acknowledged_at = received_at + 60 WHERE id > 1000"))
    broker = start_broker(work / "mosquitto")
    cfg = work / "center.toml"
    cfg.write_text(f'[mqtt]\nurl = "{broker.url}"\ninsecure = true\nclient_id = "pl"\n'
                   f'[db]\nurl = "{db}"\n[web]\nlisten = "127.0.0.1:0"\n'
                   '[auth]\ncookie_secure = false\n')
    import subprocess

    subprocess.run([sys.executable, "-m", "center", "user", "add", "bench", "--role",
                    "technician", "--config", str(cfg)], input="benchmark password", text=True,
                   cwd=REPO, check=True, capture_output=True)
    serve = Serve(["--config", str(cfg)], work / "serve.log", web=True)
    driver = browser.start()
    rows = []
    try:
        browser.login(driver, serve.url, "bench", "benchmark password")
        rows.append(measure(serve, driver, f"{args.events:,} stored, 1,000 open"))
        with writer(engine) as conn:
            conn.execute(sa.text("UPDATE events SET state = 'open', acknowledged_by = NULL, "
                                 "acknowledged_at = NULL"))
        rows.append(measure(serve, driver, f"{args.events:,} stored, all open"))
    finally:
        driver.quit()
        serve.stop()
        broker.stop()
    text = (f"Machine: {machine()}\n\nDatabase: {args.events:,} items, {size_mb:,.0f} MB "
            f"(filled in {fill_s:.0f} s through the ingest's batch writer).\n\n"
            "| queue state | GET / p50 ms | GET / p99 ms | browser load p50 ms | browser load "
            "max ms |\n|---|---|---|---|---|\n" + "\n".join(rows))
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
