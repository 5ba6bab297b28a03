"""Migrations from empty give the same schema on SQLite and PostgreSQL, equal to the
models in center/store/schema.py (Alembic's own comparison finds nothing to change)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from center.store.db import current_revision, head_revision, open_engine, upgrade
from center.store.schema import metadata


def _shape(engine: sa.Engine) -> dict[str, object]:
    insp = sa.inspect(engine)
    out: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        cols = tuple((c["name"], c["nullable"]) for c in insp.get_columns(table))
        idx = tuple(
            sorted(
                (i["name"], tuple(i["column_names"]))
                for i in insp.get_indexes(table)
                if "duplicates_constraint" not in i
            )
        )  # PG: a UNIQUE's own index
        uniq = tuple(sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)))
        out[table] = (cols, idx, uniq)
    return out


def test_upgrade_from_empty_same_tables_on_both(tmp_path, postgres) -> None:  # type: ignore[no-untyped-def]
    shapes = []
    for url in (f"sqlite:///{tmp_path}/m.db", postgres.create_db()):
        eng = open_engine(url)
        assert current_revision(eng) is None
        assert upgrade(eng) == head_revision()
        assert upgrade(eng) == head_revision()  # idempotent
        with eng.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"{eng.dialect.name}: migrations differ from schema.py: {diff}"
        shapes.append(_shape(eng))
        eng.dispose()
        if eng.dialect.name == "postgresql":  # 0002: lz4 payloads where the server has it
            with eng.connect() as conn:
                comp = conn.execute(
                    sa.text(
                        "SELECT attcompression FROM pg_attribute "
                        "WHERE attrelid = 'events'::regclass AND attname = 'payload'"
                    )
                ).scalar()
            assert comp == "l"
    assert shapes[0] == shapes[1]
    assert "events" in shapes[0] and "audit" in shapes[0]
