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


def test_auto_events_stored_before_0007_get_their_reason_and_note(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """0007 fills the queue's reason and note of auto events already stored, from their
    payloads; other events and unreadable payloads keep none."""
    import json

    from tests.center.conftest import load

    eng = open_engine(f"sqlite:///{tmp_path}/m.db")
    upgrade(eng, "0006")
    auto, button = load("patch-auto-event"), load("patch-event")
    row = {"kind": "event", "gateway": "demo-gw", "device": "patch-1", "leads": "ECG",
           "received_at": 1.0, "priority": 1}  # fmt: skip
    with eng.begin() as conn:
        for msg_id, trigger, payload in [
            ("a", "auto", json.dumps(auto)),
            ("b", "button", json.dumps(button)),
            ("c", "auto", "not json"),
        ]:
            conn.execute(
                sa.text(
                    "INSERT INTO events (msg_id, kind, gateway, device, trigger_type, leads,"
                    " received_at, priority, payload) VALUES (:msg_id, :kind, :gateway,"
                    " :device, :trigger, :leads, :received_at, :priority, :payload)"
                ),
                {**row, "msg_id": msg_id, "trigger": trigger, "payload": payload},
            )
    assert upgrade(eng) == head_revision()
    with eng.connect() as conn:
        got = conn.execute(
            sa.text("SELECT msg_id, trigger_reason, trigger_note FROM events ORDER BY msg_id")
        ).all()
    assert [tuple(r) for r in got] == [
        ("a", "pause", "pause 4.8 s"),
        ("b", None, None),
        ("c", None, None),
    ]
    eng.dispose()
