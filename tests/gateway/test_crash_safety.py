"""SIGKILL at random moments while producing: every committed message survives and is delivered."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import MqttConfig
from gateway.outbox import Outbox
from gateway.publisher import Publisher
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _kill_at_random(db: Path, runs: int, rng: random.Random) -> list[tuple[str, str, str, int]]:
    committed: list[tuple[str, str, str, int]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(runs):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.crash_producer", str(db)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        # wait for it to start producing, then kill it at a random moment
        first = proc.stdout.readline() if proc.stdout else b""
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        assert first, err.decode(errors="replace")
        for line in (first + out).decode().splitlines():
            parts = line.split()
            if len(parts) == 4:  # a line cut by the kill was not complete: not counted
                committed.append((parts[0], parts[1], parts[2], int(parts[3])))
    return committed


async def test_sigkill_50_times_nothing_committed_is_lost(mosquitto, mqtt_listener, tmp_path):
    db = tmp_path / "outbox.sqlite3"
    committed = await asyncio.to_thread(_kill_at_random, db, 50, random.Random(7))
    assert len(committed) > 50

    with Outbox(db) as ob:
        assert ob.integrity_check() == "ok"
        stored = {m.msg_id: m for m in ob.peek(limit=1_000_000)}
        assert {c[0] for c in committed} <= set(stored)
        # seq per (device, kind): 1..N without holes or repeats, across all 50 restarts
        by_stream: dict[tuple[str, str], list[int]] = {}
        for m in stored.values():
            by_stream.setdefault((m.device_id, m.kind), []).append(m.seq)
        for seqs in by_stream.values():
            assert sorted(seqs) == list(range(1, len(seqs) + 1))

    broker = mosquitto()
    listener = mqtt_listener(broker, "ecg/v1/#")
    cfg = MqttConfig(url=broker.url, insecure=True)
    with Outbox(db) as ob:
        async with Publisher(cfg, "gw", ob) as pub:
            await wait_for(lambda: ob.pending() == 0, "the outbox drained", 60)
            assert await pub.wait_drained(10)

    def received() -> set[str]:
        msgs = [m for m in list(listener.messages) if "/dev-" in m.topic]
        return {json.loads(m.payload)["msg_id"] for m in msgs}

    await wait_for(lambda: set(stored) <= received(), "every message at the subscriber", 30)
