"""Auto-triggered events keep their reason and a short note of what was measured.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Issue #12: a gateway raises events by itself when an episode begins (``trigger.type``
``auto``, ``trigger.reason`` pause, vt, af_onset, ...). The queue lists columns, not
payloads, so ``events.trigger_reason`` and ``events.trigger_note`` ("pause 4.8 s", "VT
182 bpm") are stored at ingest (:func:`center.trigger_note.trigger_note`) and filled here
for the auto events already stored, from their payloads.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from center.trigger_note import trigger_note

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("trigger_reason", sa.String(32), nullable=True,
                      comment="auto: pause, vt, ...")
        )  # fmt: skip
        batch.add_column(
            sa.Column("trigger_note", sa.String(80), nullable=True,
                      comment="auto: what it measured")
        )  # fmt: skip
    _fill()


def _fill() -> None:
    """Reason and note of every auto event stored before this revision."""
    conn = op.get_bind()
    events = sa.table(
        "events", sa.column("id"), sa.column("trigger_type"), sa.column("payload"),
        sa.column("trigger_reason"), sa.column("trigger_note"),
    )  # fmt: skip
    last = 0
    while True:
        rows = conn.execute(
            sa.select(events.c.id, events.c.payload)
            .where(events.c.trigger_type == "auto", events.c.id > last)
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row_id, payload in rows:
            try:
                trigger = json.loads(payload).get("trigger") or {}
            except (ValueError, AttributeError):
                continue
            reason, note = trigger_note(trigger if isinstance(trigger, dict) else {})
            conn.execute(
                events.update().where(events.c.id == row_id)
                .values(trigger_reason=reason, trigger_note=note)
            )  # fmt: skip
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("trigger_note")
        batch.drop_column("trigger_reason")
