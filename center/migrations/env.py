"""Alembic environment: run migrations on the connection :func:`center.store.db.upgrade` gives.

There is no alembic.ini; ``center.store.db.alembic_config`` builds the configuration, so
``ecg-center db upgrade`` and the automatic upgrade at ``serve`` start use the same code.
"""

from __future__ import annotations

from alembic import context

from center.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always given by center.store.db
    raise RuntimeError("run migrations through `ecg-center db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
