"""kill -9 of ``ecg-center serve`` at ~20 random moments while 50 simulated gateways
publish: every message the broker accepted is stored exactly once (the PUBACK to the
broker is sent only after the commit; redeliveries are de-duplicated by msg_id)."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.center.conftest import REPO, CenterBroker, wait_until

pytestmark = pytest.mark.slow

N_GATEWAYS = 50
N_MESSAGES = 4000
RATE_PER_S = 250.0
KILLS = 20


def test_kill9_loses_nothing_and_stores_once(broker: CenterBroker, tmp_path: Path, serve) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "center.db"
    args = [
        "--broker",
        broker.url,
        "--insecure",
        "--db",
        f"sqlite:///{db}",
        "--no-web",
        "--client-id",
        "crash-center",
    ]
    center = serve(args)
    engine = sa.create_engine(f"sqlite:///{db}")

    def stored() -> int:
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar() or 0)
        except sa.exc.OperationalError:
            return 0  # not migrated yet

    wait_until(lambda: "connected to" in center.log_path.read_text(), "first center up")
    out = tmp_path / "published.txt"
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.center.publisher",
            broker.url,
            str(N_GATEWAYS),
            str(N_MESSAGES),
            str(out),
            str(RATE_PER_S),
        ],
        cwd=REPO,
    )
    rng = random.Random(11)
    kills = 0
    while kills < KILLS and publisher.poll() is None:
        time.sleep(rng.uniform(0.1, 0.6))
        center.kill9()
        kills += 1
        center.start()
    assert publisher.wait(120) == 0
    assert kills >= KILLS * 0.75, f"only {kills} kills before the publisher finished"
    published = out.read_text().split()
    assert len(published) == N_MESSAGES
    wait_until(lambda: stored() >= N_MESSAGES, f"all {N_MESSAGES} stored", limit_s=90)
    time.sleep(1.0)  # anything still arriving would be a duplicate row (it cannot: UNIQUE)
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT msg_id FROM events")).scalars().all()
        dups = (
            conn.execute(sa.text("SELECT value FROM counters WHERE name = 'duplicates'")).scalar()
            or 0
        )
    assert len(ids) == len(set(ids)) == N_MESSAGES
    assert set(ids) == set(published)
    print(f"{kills} kills; {dups} redelivered duplicates recognised and stored once")
