"""sd_notify to a real AF_UNIX datagram socket standing in for systemd.

The socket is bound in a short temporary directory (socket paths are limited to 107 bytes)
or in the abstract namespace; ``$NOTIFY_SOCKET`` names it as systemd would; a reader
thread records each datagram with its arrival time (monotonic seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd_notify import Notifier, WatchdogFeeder, feed_watchdog, systemd_service


class FakeSystemd:
    """A bound datagram socket and a thread that records what arrives."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received.append((time.monotonic(), data))

    def messages(self, wait_for: int = 0, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.received) < wait_for and time.monotonic() < deadline:
            time.sleep(0.01)
        return [d for _, d in self.received]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def systemd(monkeypatch) -> Iterator[FakeSystemd]:
    """A path socket, named in ``$NOTIFY_SOCKET``."""
    directory = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(directory, "notify")
    fake = FakeSystemd(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield fake
    fake.close()
    shutil.rmtree(directory)


def test_each_call_is_one_datagram(systemd):
    n = Notifier.from_environ()
    assert n.enabled
    assert n.ready() and n.status("2 devices, broker up") and n.watchdog() and n.stopping()
    assert n.ready("running")
    assert systemd.messages(wait_for=5) == [
        b"READY=1",
        b"STATUS=2 devices, broker up",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"READY=1\nSTATUS=running",
    ]
    assert (n.sent, n.failed) == (5, 0)
    n.close()


def test_a_status_cannot_forge_another_assignment(systemd):
    Notifier.from_environ().status("line one\nREADY=1")
    assert systemd.messages(wait_for=1) == [b"STATUS=line one READY=1"]


def test_abstract_socket_names_start_with_an_at(monkeypatch):
    name = f"ecg-gateway-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert Notifier.from_environ().ready()
        assert fake.messages(wait_for=1) == [b"READY=1"]
    finally:
        fake.close()


def test_without_notify_socket_nothing_happens(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier.from_environ()
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping() and not n.status("x")
    assert (n.sent, n.failed) == (0, 0)


@pytest.mark.parametrize("kind", ["missing", "regular file", "not a socket address"])
def test_a_broken_socket_never_raises(tmp_path, kind):
    target = tmp_path / "notify"
    if kind == "regular file":
        target.write_text("")
    address = "vsock:2:9999" if kind == "not a socket address" else str(target)
    n = Notifier(address)
    assert n.ready() is False and n.watchdog() is False
    assert n.failed == (0 if kind == "not a socket address" else 2)


def test_a_full_queue_neither_blocks_nor_raises(monkeypatch):
    """systemd not reading: sends fail at once (EAGAIN) instead of stalling the loop."""
    directory = tempfile.mkdtemp(prefix="sdn-")
    path = os.path.join(directory, "notify")
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)
    try:
        n = Notifier(path)
        start = time.monotonic()
        results = [n.watchdog() for _ in range(5000)]
        assert time.monotonic() - start < 5.0
        assert results[0] and not results[-1]
        assert n.sent + n.failed == 5000 and n.failed > 0
    finally:
        deaf.close()
        shutil.rmtree(directory)


# --- the watchdog feeder (pure) ----------------------------------------------------------------
def test_feeder_from_systemds_environment():
    pid = os.getpid()
    assert WatchdogFeeder.from_environ({"WATCHDOG_USEC": "30000000"}).interval_s == 15.0
    mine = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}
    assert WatchdogFeeder.from_environ(mine, pid=pid).interval_s == 15.0
    assert WatchdogFeeder.from_environ({**mine, "WATCHDOG_PID": "1"}, pid=pid) is None
    for usec in ("", "0", "-5", "abc"):
        assert WatchdogFeeder.from_environ({"WATCHDOG_USEC": usec}) is None
    assert WatchdogFeeder.from_environ({}) is None


def test_feeder_pings_every_interval_and_measures_lateness():
    f = WatchdogFeeder(15.0)
    assert f.due(100.0) and f.delay(100.0) == 0.0
    f.fed(100.0)
    assert not f.due(110.0) and f.delay(110.0) == 5.0
    assert f.due(115.0) and f.delay(115.0) == 0.0
    f.fed(115.0)
    assert f.max_late_s == 0.0
    f.fed(140.0)  # the loop was 10 s late
    assert f.max_late_s == 10.0 and f.delay(141.0) == 14.0


# --- from an event loop ----------------------------------------------------------------------
async def test_pings_come_from_the_loop_and_stop_while_it_is_frozen(systemd):
    notifier, feeder = Notifier.from_environ(), WatchdogFeeder(0.05)
    task = asyncio.create_task(feed_watchdog(notifier, feeder))
    await asyncio.sleep(0.5)
    before = notifier.sent
    time.sleep(0.6)  # the loop is frozen: no task runs, no ping leaves
    assert notifier.sent == before
    await asyncio.sleep(0.3)
    task.cancel()
    times = [t for t, d in systemd.received if d == b"WATCHDOG=1"]
    assert before >= 3 and len(times) > before  # pings before, and again after the freeze
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 0.45  # what systemd saw: silence for as long as the loop was frozen
    assert feeder.max_late_s >= 0.5


async def test_no_watchdog_no_task(systemd):
    await asyncio.wait_for(feed_watchdog(Notifier.from_environ(), None), 1.0)
    await asyncio.wait_for(feed_watchdog(Notifier(None), WatchdogFeeder(0.01)), 1.0)
    assert systemd.messages() == []


async def test_service_says_ready_then_stopping_and_feeds_the_watchdog(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s: a ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    ready, stop = asyncio.Event(), asyncio.Event()
    async with systemd_service(ready=ready, stopping=stop, status="1 device(s)"):
        await asyncio.sleep(0.2)
        assert b"READY=1\nSTATUS=1 device(s)" not in systemd.messages()
        ready.set()
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.sleep(0.1)
    said = [d for d in systemd.messages(wait_for=8) if d != b"WATCHDOG=1"]
    assert said == [b"READY=1\nSTATUS=1 device(s)", b"STOPPING=1"]
    assert systemd.messages().count(b"WATCHDOG=1") >= 5


async def test_stopping_is_said_even_when_the_run_ends_at_once(systemd):
    ready, stop = asyncio.Event(), asyncio.Event()
    async with systemd_service(ready=ready, stopping=stop):
        ready.set()
        await asyncio.sleep(0.05)
        stop.set()  # and leave in the same step
    assert systemd.messages(wait_for=2) == [b"READY=1", b"STOPPING=1"]


def test_ecg_gateway_run_notifies_systemd(systemd, tmp_path):
    """The whole path: ``ecg-gateway run`` under a notify socket says READY=1 when up,
    feeds the watchdog, says STOPPING=1 at SIGTERM and exits 0."""
    root = Path(__file__).resolve().parents[2]
    cfg = tmp_path / "gw.toml"
    cfg.write_text(
        f'[gateway]\nid = "gw-sd"\nstate_dir = "{tmp_path / "state"}"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\ninsecure = true\n'
    )
    env = {**os.environ, "WATCHDOG_USEC": "1000000"}  # a ping every 0.5 s
    argv = [sys.executable, "-m", "gateway", "run", "--config", str(cfg)]
    proc = subprocess.Popen(argv, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "state" / "outbox.sqlite3").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the outbox is open: READY=1 follows in milliseconds
        time.sleep(2.0)  # four pings' time
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    said = [d.split(b"\n")[0] for d in systemd.messages() if d != b"WATCHDOG=1"]
    assert said == [b"READY=1", b"STOPPING=1"], err
    assert systemd.messages().count(b"WATCHDOG=1") >= 3 and proc.returncode == 0
