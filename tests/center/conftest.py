"""Fixtures of the center's tests: databases (SQLite, a throwaway PostgreSQL), brokers,
payloads, a light publisher, an in-process center and ``ecg-center serve`` subprocesses.

The PostgreSQL server is session-scoped: ``initdb`` + ``pg_ctl`` as the ``postgres`` user
(PostgreSQL refuses to run as root) on a temp directory and a free port; each test gets
its own database in it. Tests skip with the reason when the binaries are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PREFIX = "ecg/v1"


def load(name: str) -> dict[str, Any]:
    """A recorded payload from tests/center/data (``patch-event``, ``cart-strip``...)."""
    return json.loads((DATA / f"{name}.json").read_text())


def variant(
    name: str, gateway: str = "gw-1", device: str | None = None, **changes: Any
) -> tuple[str, bytes, dict[str, Any]]:
    """A recorded payload as another gateway's new message: (topic, payload, body)."""
    body = load(name)
    body["gateway_id"] = gateway
    if device is not None:
        body["device_id"] = device
    body["msg_id"] = str(uuid.uuid4())
    body.update(changes)
    topic = f"{PREFIX}/{gateway}/{body['device_id']}/{body['kind']}"
    return topic, json.dumps(body).encode(), body


# --- brokers ----------------------------------------------------------------------------


class CenterBroker(Mosquitto):
    """A mosquitto as a center would run it: big queues for offline persistent sessions."""

    def _write_config(self, acl):  # type: ignore[no-untyped-def]
        super()._write_config(acl)
        with self.conf_path.open("a") as f:
            f.write("max_queued_messages 0\nmax_inflight_messages 0\nmessage_size_limit 16777216\n")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[CenterBroker]:
    """A started plaintext broker on a free loopback port."""
    if not os.access("/usr/sbin/mosquitto", os.X_OK):
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    b = CenterBroker(tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


# --- databases --------------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL 15 cluster run as the postgres user."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="center-pg-"))
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", f"{self.dir}/data", "-A", "trust", "-U", "ecg", "-E", "UTF8")
        self._run(
            "pg_ctl",
            "-D",
            f"{self.dir}/data",
            "-w",
            "-l",
            f"{self.dir}/log",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if fsync else 'off'} -c max_connections=200",
            "start",
        )

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://ecg@127.0.0.1:{self.port}/{db}"

    def create_db(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session (skipped when not installed)."""
    if not (PG_BIN / "pg_ctl").exists() or shutil.which("runuser") is None:
        pytest.skip(f"PostgreSQL 15 binaries not found in {PG_BIN} (apt-get install postgresql)")
    try:
        pg = Postgres()
    except (subprocess.CalledProcessError, KeyError) as exc:
        pytest.skip(f"could not start a throwaway PostgreSQL: {exc}")
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/center.db"
    return request.getfixturevalue("postgres").create_db()


@pytest.fixture
def engine(db_url: str):  # type: ignore[no-untyped-def]
    """A migrated engine on each kind of database."""
    from center.store.db import open_engine, upgrade

    eng = open_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


# --- processes --------------------------------------------------------------------------


class ServeProcess:
    """``python3 -m center serve`` as a subprocess (kill -9 able)."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None

    def start(self, wait_web: bool = False) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.url = None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "center", "serve", *self.args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if wait_web:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = self.log_path.read_bytes()[offset:].decode(errors="replace")
                for line in text.splitlines():
                    if "console at " in line:
                        self.url = line.split("console at ", 1)[1].strip()
                if self.url or self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            assert self.url, self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Factory: ``serve(args)`` → a started ServeProcess, stopped at teardown."""
    procs: list[ServeProcess] = []

    def make(args: list[str], wait_web: bool = False) -> ServeProcess:
        p = ServeProcess(args, tmp_path / f"serve-{len(procs)}.log")
        procs.append(p)
        p.start(wait_web=wait_web)
        return p

    yield make
    for p in procs:
        p.stop()


def wait_until(predicate: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Poll (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.05)


def center_config(db: str | Path, broker_url: str, **sections: dict[str, Any]):  # type: ignore[no-untyped-def]
    """A test configuration: demo defaults (plaintext loopback broker, free port) + overrides."""
    from center.app import demo_config
    from center.config import parse_config

    base = demo_config(db, broker_url).model_dump(mode="json")
    if isinstance(db, str) and db.startswith("postgresql"):
        base["db"]["url"] = db
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return parse_config(base, "<test>")


def add_user(engine, name: str, role: str, password: str = "correct horse battery") -> str:  # type: ignore[no-untyped-def]
    """Create a user directly in the database; its password."""
    from center.auth import add_user as _add
    from center.store.db import writer

    with writer(engine) as conn:
        _add(conn, name, role, password, time.time())
    return password


def publish_sync(broker: Mosquitto, topic: str, payload: bytes) -> None:
    """One QoS 1 publish, waited for (a fresh client)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: a center test of several seconds (processes, browser); deselect with -m 'not slow'",
    )


def with_gap(name: str, gateway: str, first: int, n: int) -> tuple[str, bytes, dict[str, Any]]:
    """A recorded single-lead payload with ``n`` samples from index ``first`` missing
    (``E`` in the Observation, an entry in ``gaps``), as the gateway sends a dropout."""
    topic, _payload, body = variant(name, gateway=gateway)
    sd = body["observation"]["component"][0]["valueSampledData"]
    tokens = sd["data"].split()
    tokens[first : first + n] = ["E"] * n
    sd["data"] = " ".join(tokens)
    seq0 = body["samples"]["first_seq"]
    body["gaps"] = [
        {
            "first_seq": seq0 + first,
            "end_seq": seq0 + first + n,
            "n_samples": n,
            "reason": "not in patch memory",
            "final": True,
        }
    ]
    return topic, json.dumps(body).encode(), body
