"""Two ``serve`` processes on one PostgreSQL share the load through an MQTT v5 shared
subscription: every message stored once, none lost, both processes took a share."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.center.conftest import REPO, CenterBroker, wait_until

pytestmark = pytest.mark.slow

N_MESSAGES = 3000


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        return json.loads(r.read())


def test_two_processes_share_one_postgres(
    broker: CenterBroker, postgres, tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    db = postgres.create_db()
    subprocess.run(
        [sys.executable, "-m", "center", "db", "upgrade", "--db", db],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    procs = [
        serve(
            [
                "--broker",
                broker.url,
                "--insecure",
                "--db",
                db,
                "--listen",
                "127.0.0.1:0",
                "--client-id",
                f"center-{i}",
                "--share-group",
                "grp",
            ],
            wait_web=True,
        )
        for i in range(2)
    ]
    for p in procs:
        wait_until(lambda p=p: _health(p.url)["subscribed"], "subscribed")
    out = tmp_path / "published.txt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.center.publisher",
            broker.url,
            "50",
            str(N_MESSAGES),
            str(out),
        ],
        cwd=REPO,
        check=True,
        timeout=120,
    )
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))

    def stored() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM events")).scalar() or 0)

    wait_until(lambda: stored() >= N_MESSAGES, "all stored", limit_s=60)
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT msg_id FROM events")).scalars().all()
    engine.dispose()
    assert len(ids) == len(set(ids)) == N_MESSAGES
    assert set(ids) == set(out.read_text().split())
    shares = [_health(p.url)["ingest"]["stored"] for p in procs]
    assert sum(shares) == N_MESSAGES
    assert min(shares) > 0.3 * N_MESSAGES, f"load not split: {shares}"
