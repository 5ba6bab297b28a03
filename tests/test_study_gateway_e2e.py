"""A long-term study through the real gateway (issue #13), in fast time.

Processes, as they run at a patient's home and at the center: the simulated patch
(:mod:`sim.patch`, in its own process with its memory, reached over HCI on loopback), the
gateway (:class:`gateway.app.Gateway`, as ``ecg-gateway run`` builds it, in a process that
is killed with SIGKILL), mosquitto (restarted: a broker outage) and ``ecg-center serve``
(killed with SIGKILL in the middle of an upload). The patch runs ``SPEED`` times faster
than real time and the gateway's clock with it (:mod:`tests.sim_runners`); a record
("hour") holds ``FILE_S`` simulated seconds.

On the way: the patch drops the link (backfilled from its memory), the gateway is killed
while a record is half sent, the broker goes down and comes back, the center is killed
while a record is half received, and the patient walks out of range for longer than the
patch's memory (a hole nobody can fill). At the end every record the gateway holds is
confirmed, the center's current version of each equals it byte for byte (header and
samples, holes included), every sample the gateway has is the patch's, and the hole is
there on both sides.

The default run is a few simulated "hours" of 60 s (about a minute); the ``soak`` one
(``-m soak``) runs longer records for three simulated hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from tests.center.conftest import ServeProcess, wait_until

REPO = Path(__file__).resolve().parents[1]
FS = 250
NO_SAMPLE = -32768
ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's code in the children


@dataclass(frozen=True)
class Plan:
    """One run: speeds and sizes, all in simulated seconds except ``speed``."""

    speed: float
    file_s: float
    memory_s: float  # the patch's memory
    settle_s: float  # the upload waits this long after a record's end
    away_s: float  # out of range (longer than the memory: a hole)
    records: int  # at least this many records before the patient leaves for good
    rate_kb_s: float


DEFAULT = Plan(speed=20, file_s=60, memory_s=120, settle_s=30, away_s=200, records=8,
               rate_kb_s=40)  # fmt: skip
SOAK = Plan(speed=40, file_s=900, memory_s=600, settle_s=120, away_s=1200, records=12,
            rate_kb_s=120)  # fmt: skip


class PatchProcess:
    """``python3 -m tests.sim_runners patch`` and its command line on stdin."""

    def __init__(self, plan: Plan, log: Path) -> None:
        cmd = [sys.executable, "-m", "tests.sim_runners", "patch", "--speed", str(plan.speed),
               "--memory-s", str(plan.memory_s)]  # fmt: skip
        with log.open("ab") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err)  # fmt: skip
        self.hello = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the patch process ended"
        return json.loads(line)

    def command(self, text: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(10)
            except (OSError, AssertionError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)


class GatewayProcess:
    """``python3 -m tests.sim_runners gateway``: started, killed (-9), stopped (TERM)."""

    def __init__(self, config: Path, patch: PatchProcess, plan: Plan, log: Path) -> None:
        self.cmd = [sys.executable, "-m", "tests.sim_runners", "gateway", str(config),
                    "--hci-port", str(patch.hello["port"]), "--speed", str(plan.speed),
                    "--t0", str(patch.hello["t0"])]  # fmt: skip
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=ENV, stdout=out, stderr=out)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


def gateway_config(state: Path, broker_url: str, address: str, plan: Plan) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-e2e", "state_dir": str(state)},
        "mqtt": {"url": broker_url, "insecure": True, "keepalive_s": 5},
        "devices": [{"kind": "patch", "id": "p1", "address": address}],
        "strips": {"period_s": 86400},
        "auto_events": {"enabled": False},
        "live": {"enabled": False},
        "recording": {"file_s": plan.file_s, "sync_s": 0.5},
        # quiet_s compares the files' (wall-clock) times with the gateway's fast clock, so
        # it cannot hold a record back here: settle_s (simulated) is what closes a record
        "upload": {"chunk_kb": 4, "rate_kb_s": plan.rate_kb_s, "settle_s": plan.settle_s,
                   "quiet_s": 0, "resend_after_s": 86400, "scan_s": 0.5},
    }  # fmt: skip


# --- what the gateway and the center hold ----------------------------------------------------


def upload_states(state: Path) -> list[dict[str, Any]]:
    try:
        db = sqlite3.connect(state / "upload.sqlite3", timeout=5)
        try:
            rows = db.execute("SELECT state FROM records").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [json.loads(text) for (text,) in rows]


def confirmed(state: Path) -> dict[str, int]:
    """Records whose current content the center confirmed: name -> version."""
    return {s["name"]: s["confirmed_version"] for s in upload_states(state)
            if s["sha256"] and s["confirmed_sha256"] == s["sha256"]}  # fmt: skip


def half_sent(state: Path) -> bool:
    """Some record's current version has chunks handed over and is not confirmed."""
    return any(s["begun"] >= s["version"] > 0 and s["confirmed_sha256"] != s["sha256"]
               for s in upload_states(state))  # fmt: skip


def recordings(state: Path) -> dict[str, tuple[str, bytes]]:
    """The gateway's records on disk: name -> (header text, signal bytes)."""
    folder = state / "recordings" / "p1"
    return {p.stem: (p.with_suffix(".hea").read_text(), p.read_bytes())
            for p in sorted(folder.glob("*.dat"))}  # fmt: skip


def all_confirmed(state: Path) -> bool:
    """The center confirmed every record as it is on disk now (a confirmation of content
    since amended by backfill does not count, even before the uploader saw the change)."""
    sent = {s["name"]: s["confirmed_sha256"] for s in upload_states(state)}
    on_disk = recordings(state)
    return bool(on_disk) and all(
        sent.get(name) == hashlib.sha256(header.encode() + data).hexdigest()
        for name, (header, data) in on_disk.items()
    )


def center_rows(db: Path, where: str = "") -> list[tuple]:
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            query = f"SELECT name, version, state FROM study_records {where}"
            return conn.execute(query).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return []


def center_current(db_url: str) -> dict[str, tuple[str, str, bytes]]:
    """The center's current version of each record: name -> (sha256, header, signal)."""
    from center.store import schema as t
    from center.store.db import open_engine
    from center.studies.read import current_records

    eng = open_engine(db_url)
    k = t.record_chunks.c
    out = {}
    with eng.connect() as conn:
        studies = conn.execute(sa.select(t.patch_studies.c.id)).scalars().all()
        for pk in studies:
            for rec in current_records(conn, pk):
                q = sa.select(k.data).where(k.record == rec.id).order_by(k.idx)
                out[rec.name] = (rec.sha256, rec.header, b"".join(conn.execute(q).scalars()))
    eng.dispose()
    return out


# --- the run -----------------------------------------------------------------------------------


def run_study(plan: Plan, mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto(persistence=True)
    state, db = tmp_path / "gw", tmp_path / "center.db"
    db_url = f"sqlite:///{db}"
    logs = tmp_path / "logs"
    logs.mkdir()
    center = ServeProcess(["--broker", broker.url, "--insecure", "--db", db_url, "--no-web",
                           "--client-id", "center-e2e", "--share-group", ""],
                          logs / "center.log")  # fmt: skip
    center.start()
    patch = PatchProcess(plan, logs / "patch.log")
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(gateway_config(state, broker.url, patch.hello["address"], plan)))
    gateway = GatewayProcess(config, patch, plan, logs / "gateway.log")
    phases: dict[str, float] = {}
    t_start = time.monotonic()

    def mark(what: str) -> None:
        phases[what] = round(time.monotonic() - t_start, 1)

    def wait(predicate, what: str, limit_s: float = 90.0) -> None:  # type: ignore[no-untyped-def]
        try:
            wait_until(predicate, what, limit_s)
        except BaseException:
            print("phases:", phases, "\n--- gateway log tail:\n",
                  (logs / "gateway.log").read_text(errors="replace")[-4000:])  # fmt: skip
            raise
        mark(what)

    try:
        wait(lambda: len(recordings(state)) >= 1, "the gateway records")
        patch.command("disconnect")  # a link drop: the patch backfills from its memory
        wait(lambda: len(confirmed(state)) >= 1, "a first record confirmed")
        wait(lambda: half_sent(state), "a record half sent")
        gateway.kill9()  # the gateway dies in the middle of an upload
        mark("gateway killed")
        gateway.start()
        wait(lambda: len(confirmed(state)) >= 3, "three records confirmed")
        broker.stop()  # the broker goes down a while ...
        time.sleep(1.0)
        broker.start()  # ... and comes back (sessions kept)
        mark("broker back")
        receiving = "WHERE state = 'receiving'"
        wait(lambda: half_sent(state) and center_rows(db, receiving), "a record half received")
        center.kill9()  # the center dies in the middle of an upload
        mark("center killed")
        center.start()
        away = patch.command(f"away {plan.away_s}")  # out of range beyond the patch's memory
        wait(lambda: len(confirmed(state)) >= plan.records, f"{plan.records} records confirmed",
             limit_s=60 + 3 * plan.records * plan.file_s / plan.speed)  # fmt: skip
        patch.command("away 1e9")  # the patient takes the patch off: the study ends
        wait(lambda: all_confirmed(state), "every record confirmed")
    finally:
        gateway.stop()
        dump = tmp_path / "patch.npy"
        if patch.proc.poll() is None:
            patch.command(f"dump {dump}")
        patch.close()
        center.stop()
    print("phases (s since start):", phases)

    on_disk, at_center = recordings(state), center_current(db_url)
    # the center's copy equals the gateway's recording, header and samples, holes included
    assert set(at_center) == set(on_disk)
    for name, (header, data) in on_disk.items():
        sha, c_header, c_data = at_center[name]
        assert (c_header, c_data) == (header, data), name
        assert sha == hashlib.sha256(header.encode() + data).hexdigest(), name
    # every sample the gateway holds is the patch's; the walk out of range left a hole
    truth = np.load(dump)
    ours = np.full(len(truth), NO_SAMPLE, np.int64)
    for name, (_header, data) in on_disk.items():
        first = int(name.rsplit("_", 1)[1])
        x = np.frombuffer(data, "<i2")
        ours[first : first + len(x)] = x[: max(0, len(truth) - first)]
    held = ours != NO_SAMPLE
    assert (ours[held] == truth[held]).all()
    lost_from = int(away["seq"])
    lost_to = lost_from + int((plan.away_s - plan.memory_s - 1) * FS)
    assert not held[lost_from:lost_to].any()  # gone from the patch's memory before it was back
    last = int(np.flatnonzero(held)[-1]) + 1
    print(f"samples: patch {len(truth)}, gateway {int(held.sum())} up to {last}, missing "
          f"before that {int((~held[:last]).sum())} (walk-away hole at least "
          f"{lost_to - lost_from}); records {len(on_disk)}, versions at the center "
          f"{len(center_rows(db))}")  # fmt: skip


@pytest.mark.timeout(240)
def test_a_study_through_the_real_gateway_arrives_sample_for_sample(mosquitto, tmp_path):
    run_study(DEFAULT, mosquitto, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(1200)
def test_soak_three_simulated_hours_through_the_real_gateway(mosquitto, tmp_path):
    run_study(SOAK, mosquitto, tmp_path)
