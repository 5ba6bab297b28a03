"""Initial schema: strips and events with their lifecycle, studies, gateways, staff, audit.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

The audit table is append-only: a trigger refuses UPDATE and DELETE on both SQLite and
PostgreSQL (the application never issues them; the trigger makes it a property of the data).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _records()
    _studies()
    _fleet()
    _rejects()
    _staff()
    _outbox()
    _audit_append_only()


def _records() -> None:
    """Strips and events: the queue, with their lifecycle."""
    op.create_table(
        "events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="event | strip"),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column(
            "trigger_type", sa.String(length=32), nullable=False, comment="button, auto, ..."
        ),
        sa.Column("trigger_at", sa.Double(), nullable=True, comment="time of the press (button)"),
        sa.Column("start_at", sa.Double(), nullable=True),
        sa.Column("end_at", sa.Double(), nullable=True),
        sa.Column("fs", sa.Double(), nullable=True, comment="Hz"),
        sa.Column("n_samples", sa.Integer(), nullable=True),
        sa.Column("leads", sa.String(length=255), server_default="", nullable=False),
        sa.Column("heart_rate_bpm", sa.Double(), nullable=True),
        sa.Column("quality_min", sa.Double(), nullable=True, comment="0 unusable .. 1 clean"),
        sa.Column("gap_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gap_samples", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.Double(), nullable=True, comment="built on the gateway"),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False, comment="0 most urgent"),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("escalated_at", sa.Double(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("acknowledged_at", sa.Double(), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False, comment="the JSON as received"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("msg_id"),
    )
    op.create_index(
        "ix_events_device", "events", ["gateway", "device", "received_at"], unique=False
    )
    op.create_index("ix_events_hr", "events", ["heart_rate_bpm"], unique=False)
    op.create_index("ix_events_press", "events", ["trigger_at"], unique=False)
    op.create_index("ix_events_queue", "events", ["state", "priority", "received_at"], unique=False)
    op.create_index("ix_events_received", "events", ["received_at"], unique=False)
    op.create_index("ix_events_trigger", "events", ["trigger_type", "received_at"], unique=False)


def _studies() -> None:
    """Study records (recorded span, coverage, gaps per device)."""
    op.create_table(
        "studies",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("period_from", sa.Double(), nullable=True),
        sa.Column("period_to", sa.Double(), nullable=True),
        sa.Column("coverage_pct", sa.Double(), nullable=True),
        sa.Column("samples_missing", sa.BigInteger(), nullable=True),
        sa.Column("gap_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("final", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("msg_id"),
    )
    op.create_index(
        "ix_studies_device", "studies", ["gateway", "device", "received_at"], unique=False
    )


def _fleet() -> None:
    """Gateways and their on/offline and device logs."""
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "device_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Double(), nullable=False, comment="received"),
        sa.Column(
            "link", sa.String(length=64), nullable=True, comment="connections / failures summary"
        ),
        sa.Column("battery_pct", sa.Double(), nullable=True),
        sa.Column("samples", sa.BigInteger(), nullable=True),
        sa.Column("gaps", sa.Integer(), nullable=True),
        sa.Column("gap_samples", sa.BigInteger(), nullable=True),
        sa.Column("heart_rate_bpm", sa.Double(), nullable=True),
        sa.Column("facts", sa.Text(), nullable=False, comment="the device's status entry, JSON"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_device_log", "device_log", ["gateway", "device", "at"], unique=False)
    op.create_table(
        "gateway_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("at", sa.Double(), nullable=False, comment="received"),
        sa.Column("status_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gateway_log", "gateway_log", ["gateway", "at"], unique=False)
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False, comment="online | offline"),
        sa.Column(
            "status_at", sa.Double(), nullable=True, comment="the gateway's own time of the status"
        ),
        sa.Column("last_seen_at", sa.Double(), nullable=False, comment="when we received it"),
        sa.Column("outbox_pending", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(length=32), nullable=True),
        sa.Column("devices", sa.Text(), server_default="{}", nullable=False, comment="JSON"),
        sa.Column("transmission", sa.Text(), nullable=True, comment="JSON"),
        sa.PrimaryKeyConstraint("gateway_id"),
    )


def _rejects() -> None:
    """Rejected messages and the ingest counters."""
    op.create_table(
        "rejects",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("head", sa.LargeBinary(), nullable=True, comment="first bytes of the payload"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rejects_at", "rejects", ["at"], unique=False)


def _staff() -> None:
    """The audit trail, staff accounts, sessions and failed logins."""
    op.create_table(
        "audit",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column(
            "actor", sa.String(length=64), nullable=True, comment="user name; NULL = the center"
        ),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("msg_id", sa.String(length=64), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True, comment="JSON"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_at", "audit", ["at"], unique=False)
    op.create_index("ix_audit_msg", "audit", ["msg_id", "at"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_ip", "login_failures", ["ip", "at"], unique=False)
    op.create_index("ix_login_failures_user", "login_failures", ["user_name", "at"], unique=False)
    op.create_table(
        "users",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False, comment="technician | supervisor"),
        sa.Column("password_hash", sa.String(length=255), nullable=False, comment="argon2id"),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("disabled_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "sessions",
        sa.Column(
            "token_hash", sa.String(length=64), nullable=False, comment="sha256 of the token"
        ),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False, comment="cookie | bearer"),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id"], unique=False)


def _outbox() -> None:
    """Acknowledgements waiting to be published to the gateways."""
    op.create_table(
        "ack_outbox",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("msg_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True, comment="PUBACK with a success code"),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("msg_id"),
    )
    op.create_index("ix_ack_outbox_pending", "ack_outbox", ["sent_at", "id"], unique=False)


def _audit_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                "BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_append_only ON audit")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    op.drop_index("ix_sessions_user", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("users")
    op.drop_index("ix_studies_device", table_name="studies")
    op.drop_table("studies")
    op.drop_index("ix_rejects_at", table_name="rejects")
    op.drop_table("rejects")
    op.drop_index("ix_login_failures_user", table_name="login_failures")
    op.drop_index("ix_login_failures_ip", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_table("gateways")
    op.drop_index("ix_gateway_log", table_name="gateway_log")
    op.drop_table("gateway_log")
    op.drop_index("ix_events_trigger", table_name="events")
    op.drop_index("ix_events_received", table_name="events")
    op.drop_index("ix_events_queue", table_name="events")
    op.drop_index("ix_events_press", table_name="events")
    op.drop_index("ix_events_hr", table_name="events")
    op.drop_index("ix_events_device", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_device_log", table_name="device_log")
    op.drop_table("device_log")
    op.drop_table("counters")
    op.drop_index("ix_audit_msg", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
    op.drop_index("ix_ack_outbox_pending", table_name="ack_outbox")
    op.drop_table("ack_outbox")
