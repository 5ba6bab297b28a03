"""Engines and migrations for SQLite (embedded, WAL) and PostgreSQL (psycopg 3).

``open_engine(url)`` gives an engine whose write transactions on SQLite begin with
``BEGIN IMMEDIATE`` (no lock upgrade that could fail under a second writer) when used
through :func:`writer`; ``upgrade(engine)`` runs the Alembic migrations to head.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = [
    "alembic_config",
    "current_revision",
    "head_revision",
    "open_engine",
    "upgrade",
    "writer",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30000
"""How long a SQLite writer waits for another process's transaction, ms."""


def _normalise(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def open_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    """An engine for ``sqlite:///PATH`` or ``postgresql://...``; SQLite gets WAL + FULL sync."""
    url = _normalise(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=10,
        )
        _sqlite_pragmas(engine)
        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we send the PUBACK (NORMAL could lose the last
        # commits on power loss, after the broker forgot them).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def writer(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on normal exit."""
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        yield conn


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration (no ini file): scripts from ``center/migrations``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("center") / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at (None: empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> str | None:
    """Migrate the database to ``revision``; return the revision it is at afterwards."""
    before = current_revision(engine)
    with engine.connect().execution_options(immediate=True) as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()
    after = current_revision(engine)
    if before != after:
        log.info("database migrated from %s to %s", before or "empty", after)
    return after
