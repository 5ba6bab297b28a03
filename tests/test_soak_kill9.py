"""Kill -9 soak (issue #10): the real gateway killed 30 times, a cart and a patch beside it.

Processes as at a stress-test lab with a patient on a patch: a cart on a real pty
(:class:`sim.cart.SimCart`, in this process), a patch in its own process with its memory
(reached over HCI on loopback, :mod:`tests.sim_runners`), the gateway
(:class:`gateway.app.Gateway` as ``ecg-gateway run`` builds it, :mod:`tests.sim_runners`)
and mosquitto. The gateway is killed with SIGKILL 30 times, each after a random 1.5-6 s;
during some runs the broker is restarted (sessions kept). A last run goes on until the
outbox is drained and the patch's backfill is in, then stops with SIGTERM.

Then, per device: every sample the device produced (from the first one any gateway
recorded to the end of the recording) is in the recording under its own number with the
device's value, or in a gap the gateway reported; the count of those that are neither is
printed (``samples unaccounted``; goal 0) and asserted 0. Every strip and event the
gateway committed (1..N per device and kind) reached the subscriber. The study record
is continuous: it counts from the first run's first sample and its missing samples are
those of the gap ledger.

Not in the default suite (``python3 -m pytest -m soak tests/test_soak_kill9.py``, about
2.5 minutes; ``SOAK_KILLS=3`` for a quick look); the 8-kill cart test in
``tests/gateway/test_crash_safety.py`` is the short one in the default suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.outbox import Outbox
from tests.support import NO_SAMPLE, outbox_counters, read_recording, wait_for
from tests.test_study_gateway_e2e import GatewayProcess, PatchProcess, Plan

KILLS = int(os.environ.get("SOAK_KILLS", "30"))  # (fewer: a quick look)
PLAN = Plan(speed=1, file_s=60, memory_s=3600, settle_s=30, away_s=0, records=0, rate_kb_s=0)
GW = "gw-soak"


def _config(state: Path, broker_url: str, cart_port: str, address: str) -> dict[str, Any]:
    return {
        "gateway": {"id": GW, "state_dir": str(state)},
        "mqtt": {"url": broker_url, "insecure": True, "keepalive_s": 5},
        "devices": [
            {"kind": "cart_serial", "id": "cart-1", "port": cart_port},
            {"kind": "patch", "id": "p1", "address": address},
        ],
        "strips": {"period_s": 2.0, "duration_s": 2.0},
        "live": {"enabled": False},
        "recording": {"file_s": PLAN.file_s, "sync_s": 0.5},
    }


def _drained(db: Path) -> bool:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM messages")}
    finally:
        con.close()
    return not kinds - {"status"}


def unaccounted(state: Path, device: str, truth: np.ndarray) -> tuple[int, dict[str, int]]:
    """Samples of ``truth`` (the device's own, µV by sample number, (n,) or (n, leads))
    neither recorded under their number with their value nor in a reported gap, from the
    first recorded sample to the recording's end; and the facts behind the count."""
    rec = read_recording(state / "recordings" / device)
    assert len(rec) == 1, f"{device}: one stream, no restart taken: {sorted(rec)}"
    ((first, rows),) = rec.values()
    truth = truth.reshape(len(truth), -1)[:, : rows.shape[1]]
    end = min(first + len(rows), len(truth))
    rows = rows[: end - first]
    have = ~(rows == NO_SAMPLE).all(axis=1)
    want = np.clip(truth[first:end], -32767, 32767)
    wrong = have & (rows != want).any(axis=1)
    ledger = state / "study" / f"{device}.gaps.jsonl"
    gaps = [json.loads(x) for x in ledger.read_text().splitlines()] if ledger.exists() else []
    reported = np.zeros(end - first, bool)
    for g in gaps:
        reported[max(g["first_seq"] - first, 0) : max(g["end_seq"] - first, 0)] = True
    start = int(np.flatnonzero(have)[0])  # before any gateway listened: not a loss
    lost = (~have & ~reported)[start:]
    facts = {
        "first": first,
        "end": end,
        "recorded": int(have.sum()),
        "reported": int(reported.sum()),
        "both": int((have & reported).sum()),
        "wrong_value": int(wrong.sum()),
        "neither": int(lost.sum()),
        "gaps": len(gaps),
        "gap_samples": sum(g["n_samples"] for g in gaps),
    }
    return int(lost.sum() + wrong.sum()), facts


@pytest.mark.soak
@pytest.mark.timeout(1500)
async def test_soak_30_kills_with_a_cart_and_a_patch(mosquitto, mqtt_listener, tmp_path):
    from sim.cart import SimCart

    rng = random.Random(2026)
    broker = mosquitto(persistence=True)
    listener = mqtt_listener(broker, f"ecg/v1/{GW}/#", client_id="soak-center",
                             session_expiry_s=3600)  # fmt: skip
    state, logs = tmp_path / "gw", tmp_path / "logs"
    logs.mkdir()
    db = state / "outbox.sqlite3"
    patch = await asyncio.to_thread(PatchProcess, PLAN, logs / "patch.log")
    restarts = 0
    try:
        async with SimCart(speed=4.0, stage_s=6.0, seed=5, keep=True) as cart:
            config = tmp_path / "gateway.json"
            cfg = _config(state, broker.url, cart.port, patch.hello["address"])
            config.write_text(json.dumps(cfg))
            gateway = GatewayProcess(config, patch, PLAN, logs / "gateway.log")
            for kill in range(KILLS):
                if kill:
                    gateway.start()
                await asyncio.sleep(rng.uniform(1.5, 6.0))
                if kill % 4 == 3:  # the broker goes down and comes back during this run
                    await asyncio.to_thread(broker.stop)
                    await asyncio.sleep(rng.uniform(0.2, 2.0))
                    await asyncio.to_thread(broker.start)
                    restarts += 1
                    await asyncio.sleep(rng.uniform(0.0, 2.0))
                await asyncio.to_thread(gateway.kill9)
                if db.exists():
                    with Outbox(db) as ob:
                        assert ob.integrity_check() == "ok", f"after kill {kill + 1}"
            gateway.start()  # the last run drains everything and backfills, then stops
            await wait_for(lambda: db.exists() and _drained(db), "outbox drained", 120)

            def patch_in() -> bool:
                seq = patch.command("seq")["seq"]
                return unaccounted(state, "p1", np.zeros(seq, np.int64))[1]["neither"] == 0

            with_patch = await _settle(patch_in, 120)
            await asyncio.sleep(3.0)  # strips of the last seconds committed and sent
            await wait_for(lambda: _drained(db), "outbox drained at the end", 60)
            await asyncio.to_thread(gateway.stop)
            assert gateway.proc is not None and gateway.proc.returncode == 0
        dump = tmp_path / "patch.npy"
        await asyncio.to_thread(patch.command, f"dump {dump}")
    finally:
        await asyncio.to_thread(patch.close)
    _report_and_check(state, db, listener, {"cart-1": cart.recorded, "p1": np.load(dump)})
    print(f"kills {KILLS}, broker restarts {restarts}, patch backfill settled: {with_patch}")


async def _settle(predicate, limit_s: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (in a thread) until true or ``limit_s``; whether it came true."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if await asyncio.to_thread(predicate):
                return True
        except (AssertionError, IndexError, ValueError, OSError):
            pass  # no recording yet
        await asyncio.sleep(1.0)
    return False


def _report_and_check(state: Path, db: Path, listener, truths: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    totals = {}
    for device, truth in truths.items():
        n, facts = unaccounted(state, device, truth)
        totals[device] = n
        print(f"{device}: samples unaccounted after the soak {n}; {facts}")
    committed = outbox_counters(db)
    with Outbox(db) as ob:
        assert ob.dropped() == []
        assert ob.integrity_check() == "ok"
    got: dict[tuple[str, str], set[int]] = {}
    for m in list(listener.messages):
        kind = m.topic.rsplit("/", 1)[-1]
        if kind in ("strip", "event"):
            got.setdefault((m.topic.split("/")[3], kind), set()).add(int(m.user_properties["seq"]))
    undelivered = {
        (d, k): sorted(set(range(1, last + 1)) - got.get((d, k), set()))[:10]
        for (d, k), last in committed.items()
        if k in ("strip", "event")
    }
    print("committed:", committed, "undelivered (first 10):", undelivered)
    assert totals == {d: 0 for d in truths}
    assert not any(undelivered.values())
    for device in truths:
        studies = [m.json() for m in listener.messages if m.topic.endswith(f"/{device}/study")]
        ledger = state / "study" / f"{device}.gaps.jsonl"
        gaps = [json.loads(x) for x in ledger.read_text().splitlines()] if ledger.exists() else []
        ((first, rows),) = read_recording(state / "recordings" / device).values()
        received = first + int(np.flatnonzero(~(rows == NO_SAMPLE).all(axis=1))[0])
        final = studies[-1]["recording"]  # from the first sample any run received
        assert final["first_seq"] == received and final["end_seq"] >= first + len(rows), final
        assert final["samples_missing"] == sum(g["n_samples"] for g in gaps), device
