"""A long-term study end to end, with real processes: the gateway's uploader (publisher +
outbox + upload state) and ``ecg-center serve`` as subprocesses on a real mosquitto. Five
one-minute records (fast time for hours) with a hole; the gateway is killed (-9) in the
middle of the upload, the broker goes down, the center is killed (-9); at the end the
center's copy equals the gateway's recording sample for sample, holes included; late
backfill into a confirmed record arrives as version 2; only confirmed records may go."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from core.block import SampleBlock
from gateway.recording import RecordingStore
from tests.center.conftest import ServeProcess, wait_until

pytestmark = pytest.mark.timeout(150)
REPO = Path(__file__).resolve().parents[1]
FS = 250.0
T0 = 1_790_000_000.0

GATEWAY = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.config import MqttConfig
    from gateway.mqtt import Publisher
    from gateway.outbox import Outbox
    from gateway.upload import UploadSettings
    from gateway.upload_io import Uploader
    from gateway.upload_rate import KindLimit, TokenBucket

    async def main(url, state):
        outbox = Outbox(state / "outbox.sqlite3")
        cfg = MqttConfig(url=url, insecure=True, client_id="gw-e2e")
        limits = {"record": KindLimit(2, TokenBucket(15000.0, 20000.0))}
        async with Publisher(cfg, "gw-e2e", outbox, limits=limits,
                             reconnect_delay_s=(0.1, 0.5)) as pub:
            up = Uploader(state / "recordings", state / "upload.sqlite3", outbox,
                          gateway_id="gw-e2e", topic_prefix="ecg/v1",
                          settings=UploadSettings(chunk_bytes=8192, settle_s=0.0, quiet_s=0.5,
                                                  resend_after_s=20.0),
                          file_s=60.0, scan_s=0.5, poll_s=0.05, wake=pub.wake)
            pub.subscribe(up.ack_filter, up.on_message)
            print("running", flush=True)
            await up.run()

    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
    """
)


def _signal(n: int) -> np.ndarray:
    t = np.arange(n) / FS
    beats = (np.modf(t)[0] < 0.04).astype(float) * 1.0  # a 40-ms spike a second
    return (beats + 0.05 * np.sin(2 * np.pi * 0.3 * t))[:, None]


def _write(store: RecordingStore, x: np.ndarray, a: int, b: int) -> None:
    for i in range(a, b, 250):
        store.write(SampleBlock(x[i : min(i + 250, b)], FS, T0 + i / FS, i, ("ECG",), "p1"))


def _confirmed(state: Path) -> dict[str, int]:
    try:
        db = sqlite3.connect(state / "upload.sqlite3", timeout=5)
        rows = db.execute("SELECT state FROM records").fetchall()
        db.close()
    except sqlite3.Error:
        return {}
    out = {}
    for (text,) in rows:
        st = json.loads(text)
        if st["confirmed_sha256"] and st["confirmed_sha256"] == st["sha256"]:
            out[st["name"]] = st["confirmed_version"]
    return out


def _center_copy(db_url: str) -> dict[tuple[str, int], bytes]:
    from center.store import schema as t
    from center.store.db import open_engine

    eng = open_engine(db_url)
    r, k = t.study_records.c, t.record_chunks.c
    out = {}
    with eng.connect() as conn:
        for rid, name, version in conn.execute(
            sa.select(r.id, r.name, r.version).where(r.state == "verified")
        ):
            q = sa.select(k.data).where(k.record == rid).order_by(k.idx)
            out[(name, version)] = b"".join(conn.execute(q).scalars())
    eng.dispose()
    return out


def test_a_study_through_kills_and_an_outage_arrives_sample_for_sample(mosquitto, tmp_path):
    broker = mosquitto(persistence=True)
    state, db_url = tmp_path / "gw", f"sqlite:///{tmp_path}/center.db"
    x = _signal(int(300 * FS))
    store = RecordingStore(state / "recordings" / "p1", "p1", file_s=60.0)
    _write(store, x, 0, int(100 * FS))
    _write(store, x, int(110 * FS), int(300 * FS))  # 10 s never received (for now)
    store.close()
    (tmp_path / "gw.py").write_text(GATEWAY)
    center = ServeProcess(["--broker", broker.url, "--insecure", "--db", db_url, "--no-web",
                           "--client-id", "center-e2e", "--share-group", ""],
                          tmp_path / "center.log")  # fmt: skip
    center.start()
    gw_cmd = [sys.executable, str(tmp_path / "gw.py"), broker.url, str(state)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's gateway, not another
    gw = subprocess.Popen(gw_cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    try:
        wait_until(lambda: len(_confirmed(state)) >= 1, "a first record confirmed", 40)
        gw.send_signal(signal.SIGKILL)  # the gateway dies mid-upload
        gw.wait(10)
        broker.stop()  # ... and the broker is down a while
        time.sleep(1.0)
        broker.start()
        gw = subprocess.Popen(gw_cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
        wait_until(lambda: len(_confirmed(state)) >= 3, "three confirmed", 60)
        center.kill9()  # the center dies mid-upload
        time.sleep(0.5)
        center.start()
        wait_until(lambda: len(_confirmed(state)) == 5, "all five confirmed", 90)
        store = RecordingStore(state / "recordings" / "p1", "p1", file_s=60.0)
        _write(store, x, int(100 * FS), int(110 * FS))  # late backfill into a sent hour
        store.close()
        wait_until(lambda: _confirmed(state).get("p1_000000015000") == 2, "version 2", 60)
    finally:
        gw.send_signal(signal.SIGKILL)
        gw.wait(10)
        center.stop()
    copy = _center_copy(db_url)
    on_disk = {p.stem: p.read_bytes() for p in (state / "recordings" / "p1").glob("*.dat")}
    current = {n: copy[(n, v)] for n, v in _confirmed(state).items()}
    assert current == on_disk  # sample for sample
    v1 = np.frombuffer(copy[("p1_000000015000", 1)], "<i2")
    assert (v1[int(40 * FS) : int(50 * FS)] == -32768).all()  # version 1 kept its hole
    assert len(copy) == 6  # five records, one of them in two versions
