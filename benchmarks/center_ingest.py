"""Ingest throughput of ``ecg-center serve``: strips and events from 1,000 gateway ids.

Usage::

    python3 benchmarks/center_ingest.py [--messages 20000] [--markdown FILE]

For each database (SQLite file, WAL, synchronous=FULL; PostgreSQL 15 with fsync on) and for
one and two ``serve`` processes (two: an MQTT v5 shared subscription over one database),
one light publisher process (paho, QoS 1, window 200) sends real recorded payloads — nine
patch strips (≈11 KB) for each patch event (≈20 KB) — from 1,000 simulated gateway ids to
a local mosquitto. The clock runs from the first publish until the database holds every
message (each stored once, by msg_id; the PUBACK to the broker only after the commit).
Everything shares this machine's cores: publisher, broker, database and center(s).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.center_common import (
    REPO,
    Serve,
    cpu_by_name,
    cpu_s,
    machine,
    start_broker,
    start_postgres,
)

N_GATEWAYS = 1000
OTHERS = {"broker": ("mosquitto",), "db": ("postgres",)}
"""Other processes whose CPU time is reported (PostgreSQL's server processes, the broker)."""


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar() or 0)


def _serves(broker, db_url: str, tag: str, processes: int, work: Path,  # type: ignore[no-untyped-def]
            wait: bool = True) -> list[Serve]:
    return [Serve(["--broker", broker.url, "--insecure", "--db", db_url, "--no-web",
                   "--client-id", f"bench-{tag}-{i}", "--share-group", f"g-{tag}"],
                  work / f"serve-{tag}-{i}.log", wait=wait) for i in range(processes)]


def _publish(broker, n: int, out: Path) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen([sys.executable, "-m", "tests.center.publisher", broker.url,
                             str(N_GATEWAYS), str(n), str(out)], cwd=REPO)


def run_case(db_url: str, processes: int, n: int, work: Path, broker, mode: str) -> dict:  # type: ignore[no-untyped-def]
    """One measurement: messages/s stored, and the center's CPU seconds.

    ``live``: the publisher runs while the center stores (they share the cores).
    ``backlog``: the messages wait in the broker for the centers' persistent sessions (as
    after an outage); the clock runs from the first stored message to the last (the CPU
    seconds include each process's start, about 0.7 s).
    """
    subprocess.run([sys.executable, "-m", "center", "db", "upgrade", "--db", db_url], cwd=REPO,
                   check=True, capture_output=True)
    tag = f"{'pg' if db_url.startswith('postgresql') else 'sqlite'}{processes}-{time.time_ns()}"
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    serves = _serves(broker, db_url, tag, processes, work)
    if mode == "backlog":
        for s in serves:
            s.stop()  # sessions and shared subscriptions stay on the broker
        assert _publish(broker, n, work / f"pub-{tag}.txt").wait(300) == 0
        serves = _serves(broker, db_url, tag, processes, work, wait=False)
    cpu0 = [cpu_s(s.proc.pid) for s in serves]
    others0 = {k: cpu_by_name(*v) for k, v in OTHERS.items()}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    pub = _publish(broker, n, work / f"pub-{tag}.txt") if mode == "live" else None
    if mode == "backlog":
        while _count(engine) == 0:
            time.sleep(0.005)
        t0 = time.perf_counter()
    while _count(engine) < n:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    pub_cpu = 0.0
    if pub is not None:
        pub.wait(60)  # reaped: its CPU time is now in RUSAGE_CHILDREN
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        pub_cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    center_cpu = sum(cpu_s(s.proc.pid) - c for s, c in zip(serves, cpu0, strict=True))
    others = {k: cpu_by_name(*v) - others0[k] for k, v in OTHERS.items()}
    for s in serves:
        s.stop()
    engine.dispose()
    return {"db": "PostgreSQL" if db_url.startswith("postgresql") else "SQLite", "mode": mode,
            "processes": processes, "messages": n, "seconds": elapsed, "rate": n / elapsed,
            "center_cpu_s": center_cpu, "publisher_cpu_s": pub_cpu,
            **{f"{k}_cpu_s": v for k, v in others.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="center-bench-"))
    broker = start_broker(work / "mosquitto")
    pg = start_postgres()
    results = []
    try:
        for mode in ("live", "backlog"):
            for processes in (1, 2):
                results.append(run_case(f"sqlite:///{work}/c{mode}{processes}.db", processes,
                                        args.messages, work, broker, mode))
                results.append(run_case(pg.create_db(), processes, args.messages, work, broker,
                                        mode))
                for r in results[-2:]:
                    print(f"{mode:8} {r['db']:10} {r['processes']} process(es): "
                          f"{r['rate']:8,.0f} msg/s ({r['messages']} in {r['seconds']:.1f} s; "
                          f"center CPU {r['center_cpu_s']:.1f} s)", flush=True)
    finally:
        broker.stop()
        pg.stop()
    print(table(results))
    if args.markdown:
        args.markdown.write_text(table(results) + "\n")
    return 0


def table(results: list[dict]) -> str:
    """The results as a markdown table (with the machine)."""
    lines = [f"Machine: {machine()}", "",
             "| publisher | database | serve processes | messages | seconds | messages/s | "
             "vs one process | CPU s: center | PostgreSQL | mosquitto | publisher |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    one = {(r["mode"], r["db"]): r["rate"] for r in results if r["processes"] == 1}
    for r in results:
        mode = "concurrent" if r["mode"] == "live" else "backlog (before)"
        lines.append(f"| {mode} | {r['db']} | {r['processes']} | {r['messages']} | "
                     f"{r['seconds']:.1f} | {r['rate']:,.0f} | "
                     f"{r['rate'] / one[(r['mode'], r['db'])]:.2f}x | {r['center_cpu_s']:.1f} | "
                     f"{r['db_cpu_s']:.1f} | {r['broker_cpu_s']:.1f} | "
                     f"{r['publisher_cpu_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
