"""PostgreSQL: compress stored payloads with lz4 instead of pglz.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Strips are 10-200 KB of JSON; with the default pglz TOAST compression PostgreSQL spent most
of an ingest transaction compressing them (about 3,000 strips/s on one core here; with lz4
about 5,200/s, at a similar size on disk). Only for servers built with lz4 (Debian's are);
SQLite is unchanged. Existing rows keep their compression until rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (("events", "payload"), ("studies", "payload"))


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(bind.execute(sa.text(
        "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)")).scalar())


def upgrade() -> None:
    if _lz4_available():
        for table, column in _COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        for table, column in _COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION pglz")
