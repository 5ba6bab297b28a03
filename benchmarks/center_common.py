"""Shared parts of the center benchmarks: a mosquitto, a PostgreSQL, serve processes, CPU."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.center.conftest import CenterBroker, Postgres  # noqa: E402


def machine() -> str:
    """One line: CPU, cores, Python, SQLite."""
    import sqlite3

    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.machine()} {model}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def start_broker(directory: Path) -> CenterBroker:
    """A mosquitto as a center runs it (unlimited queues for offline persistent sessions)."""
    b = CenterBroker(directory)
    b.start()
    return b


def start_postgres() -> Postgres:
    """A throwaway PostgreSQL 15 with fsync on (durable commits, as in production)."""
    return Postgres(fsync=True)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_name(*names: str) -> float:
    """CPU seconds so far of every process whose command name is one of ``names``."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        if comm in names:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Serve:
    """``python3 -m center serve`` in a subprocess; its console URL when the web is on."""

    def __init__(self, args: list[str], log: Path, web: bool = False, wait: bool = True) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "center", "serve", *args],
                                     cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.url: str | None = None
        deadline = time.monotonic() + (30 if wait else 0)
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if web and "console at " in text:
                self.url = text.split("console at ", 1)[1].split()[0]
            if "connected to" in text and (self.url or not web):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(text)
            time.sleep(0.05)
        if wait:
            time.sleep(0.5)  # subscriptions

    def health(self) -> dict:
        assert self.url
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
