"""The tables, as SQLAlchemy Core metadata.

The Alembic migrations in ``center/migrations/versions`` create exactly this schema (a test
compares them on SQLite and PostgreSQL). Change both together: a new numbered migration and
this file.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "ack_outbox",
    "audit",
    "certificates",
    "counters",
    "device_log",
    "enroll_tokens",
    "events",
    "gateway_configs",
    "gateway_log",
    "gateways",
    "login_failures",
    "metadata",
    "patch_studies",
    "record_analysis",
    "record_chunks",
    "rejects",
    "sessions",
    "studies",
    "study_records",
    "users",
]

metadata = sa.MetaData()

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Surrogate keys: BIGINT identity on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite."""

Time = sa.Double
"""POSIX seconds, UTC."""

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False, comment="event | strip"),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("trigger_type", sa.String(32), nullable=False, comment="button, auto, ..."),
    sa.Column("trigger_at", Time, nullable=True, comment="time of the press (button)"),
    sa.Column("trigger_reason", sa.String(32), nullable=True, comment="auto: pause, vt, ..."),
    sa.Column("trigger_note", sa.String(80), nullable=True, comment="auto: what it measured"),
    sa.Column("start_at", Time, nullable=True),
    sa.Column("end_at", Time, nullable=True),
    sa.Column("fs", sa.Double, nullable=True, comment="Hz"),
    sa.Column("n_samples", sa.Integer, nullable=True),
    sa.Column("leads", sa.String(255), nullable=False, server_default=""),
    sa.Column("heart_rate_bpm", sa.Double, nullable=True),
    sa.Column("quality_min", sa.Double, nullable=True, comment="0 unusable .. 1 clean"),
    sa.Column("gap_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("gap_samples", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Time, nullable=True, comment="built on the gateway"),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False, comment="0 most urgent"),
    sa.Column("state", sa.String(16), nullable=False, server_default="open"),
    sa.Column("escalated_at", Time, nullable=True),
    sa.Column("acknowledged_by", sa.String(64), nullable=True),
    sa.Column("acknowledged_at", Time, nullable=True),
    sa.Column("ack_note", sa.Text, nullable=True),
    sa.Column("payload", sa.Text, nullable=False, comment="the JSON as received"),
    sa.Index("ix_events_queue", "state", "priority", "received_at"),
    sa.Index("ix_events_device", "gateway", "device", "received_at"),
    sa.Index("ix_events_received", "received_at"),
    sa.Index("ix_events_trigger", "trigger_type", "received_at"),
    sa.Index("ix_events_press", "trigger_at"),
    sa.Index("ix_events_hr", "heart_rate_bpm"),
    sa.Index("ix_events_escalation", "state", "escalated_at", "trigger_type", "received_at"),
)

studies = sa.Table(
    "studies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("period_from", Time, nullable=True),
    sa.Column("period_to", Time, nullable=True),
    sa.Column("coverage_pct", sa.Double, nullable=True),
    sa.Column("samples_missing", sa.BigInteger, nullable=True),
    sa.Column("gap_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("final", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_studies_device", "gateway", "device", "received_at"),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, comment="online | offline"),
    sa.Column("status_at", Time, nullable=True, comment="the gateway's own time of the status"),
    sa.Column("last_seen_at", Time, nullable=False, comment="when we received it"),
    sa.Column("outbox_pending", sa.Integer, nullable=True),
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("devices", sa.Text, nullable=False, server_default="{}", comment="JSON"),
    sa.Column("transmission", sa.Text, nullable=True, comment="JSON"),
    sa.Column("health", sa.Text, nullable=True, comment="JSON: host facts (issue #14)"),
)

gateway_log = sa.Table(
    "gateway_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", Time, nullable=False, comment="received"),
    sa.Column("status_at", Time, nullable=True),
    sa.Index("ix_gateway_log", "gateway", "at"),
)

device_log = sa.Table(
    "device_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("at", Time, nullable=False, comment="received"),
    sa.Column("link", sa.String(64), nullable=True, comment="connections / failures summary"),
    sa.Column("battery_pct", sa.Double, nullable=True),
    sa.Column("samples", sa.BigInteger, nullable=True),
    sa.Column("gaps", sa.Integer, nullable=True),
    sa.Column("gap_samples", sa.BigInteger, nullable=True),
    sa.Column("heart_rate_bpm", sa.Double, nullable=True),
    sa.Column("facts", sa.Text, nullable=False, comment="the device's status entry, JSON"),
    sa.Index("ix_device_log", "gateway", "device", "at"),
)

rejects = sa.Table(
    "rejects",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("head", sa.LargeBinary, nullable=True, comment="first bytes of the payload"),
    sa.Index("ix_rejects_at", "at"),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("actor", sa.String(64), nullable=True, comment="user name; NULL = the center"),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("msg_id", sa.String(64), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True, comment="JSON"),
    sa.Index("ix_audit_msg", "msg_id", "at"),
    sa.Index("ix_audit_at", "at"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False, comment="technician | supervisor"),
    sa.Column("password_hash", sa.String(255), nullable=False, comment="argon2id"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("disabled_at", Time, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True, comment="sha256 of the token"),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False, comment="cookie | bearer"),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_used_at", Time, nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Index("ix_sessions_user", "user_id"),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False),
    sa.Column("user_name", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Index("ix_login_failures_user", "user_name", "at"),
    sa.Index("ix_login_failures_ip", "ip", "at"),
)

ack_outbox = sa.Table(
    "ack_outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), nullable=False, unique=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sent_at", Time, nullable=True, comment="PUBACK with a success code"),
    sa.Column("last_error", sa.String(255), nullable=True),
    sa.Index("ix_ack_outbox_pending", "sent_at", "id"),
)


# --- long-term patch studies (issue #13): full disclosure, versions, scanning analysis ----

patch_studies = sa.Table(
    "patch_studies",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("study_id", sa.String(64), nullable=False, unique=True, comment="pseudonymous"),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False, comment="the patch"),
    sa.Column("patient", sa.String(64), nullable=True, comment="a pseudonym only"),
    sa.Column("started_at", Time, nullable=False, comment="first sample of the first record"),
    sa.Column("ended_at", Time, nullable=True, comment="set by a supervisor: study closed"),
    sa.Column("last_end_at", Time, nullable=False, comment="end of the newest record"),
    sa.Column("fs", sa.Double, nullable=True, comment="Hz"),
    sa.Column("leads", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=True),
    sa.Column("updated_by", sa.String(64), nullable=True),
    sa.Index("ix_patch_studies_device", "gateway", "device", "started_at"),
)

study_records = sa.Table(
    "study_records",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("study", Id, sa.ForeignKey("patch_studies.id"), nullable=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("name", sa.String(160), nullable=False, comment="WFDB record name on the gateway"),
    sa.Column("version", sa.Integer, nullable=False, comment="1, 2, ... after late backfill"),
    sa.Column("sha256", sa.String(64), nullable=False, comment="of the .hea then .dat bytes"),
    sa.Column("size", sa.BigInteger, nullable=False, comment=".dat bytes"),
    sa.Column("header", sa.Text, nullable=False, comment="the .hea text"),
    sa.Column("chunks", sa.Integer, nullable=False),
    # also "abandoned" (center/studies/store.py abandon_superseded): the comment is the one
    # migration 0004 made, kept so that the schema and the migrations compare equal
    sa.Column("state", sa.String(16), nullable=False, comment="receiving | verified | failed"),
    sa.Column("fs", sa.Double, nullable=True),
    sa.Column("n_sig", sa.Integer, nullable=True),
    sa.Column("leads", sa.String(255), nullable=False, server_default=""),
    sa.Column("first_seq", sa.BigInteger, nullable=True),
    sa.Column("start_at", Time, nullable=True),
    sa.Column("samples", sa.BigInteger, nullable=True),
    sa.Column("missing", sa.BigInteger, nullable=True, comment="samples never received"),
    sa.Column("received_at", Time, nullable=False, comment="first chunk"),
    sa.Column("verified_at", Time, nullable=True),
    sa.UniqueConstraint("gateway", "device", "name", "version", name="uq_study_records_version"),
    sa.Index("ix_study_records_study", "study", "start_at"),
    sa.Index("ix_study_records_state", "state", "verified_at"),
)

record_chunks = sa.Table(
    "record_chunks",
    metadata,
    sa.Column("record", Id, sa.ForeignKey("study_records.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False, comment="signal bytes, as sent"),
)

record_analysis = sa.Table(
    "record_analysis",
    metadata,
    sa.Column("record", Id, sa.ForeignKey("study_records.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("beats", sa.LargeBinary, nullable=False,
              comment="R peaks, int32 LE from record start"),
    sa.Column("labels", sa.LargeBinary, nullable=False, comment="one byte per beat: N S V Q"),
    sa.Column("quality", sa.LargeBinary, nullable=False,
              comment="per second: 0-100 quality index x 100, 255 no sample"),
    sa.Column("recorded_s", sa.Double, nullable=False),
    sa.Column("analysable_s", sa.Double, nullable=False),
    sa.Column("analysed_at", Time, nullable=False),
    sa.Column("lead_in", Id, nullable=True,
              comment="study_records.id of the preceding record's version run first"),
)

# --- fleet provisioning and operations (issue #14, migration 0005) ---------------------------

enroll_tokens = sa.Table(
    "enroll_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True, comment="sha256 of the token"),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time, nullable=True),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Index("ix_enroll_tokens_gateway", "gateway"),
)

certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("serial", sa.String(48), primary_key=True, comment="hex"),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, comment="enroll | renew"),
    sa.Column("issued_at", Time, nullable=False),
    sa.Column("not_before", Time, nullable=False),
    sa.Column("not_after", Time, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, comment="sha256, hex"),
    sa.Column("revoked_at", Time, nullable=True),
    sa.Index("ix_certificates_gateway", "gateway", "not_after"),
)

gateway_configs = sa.Table(
    "gateway_configs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("document", sa.Text, nullable=False, comment="the published JSON"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("sent_at", Time, nullable=True, comment="PUBACK with a success code"),
    sa.Column("last_error", sa.String(255), nullable=True),
    sa.UniqueConstraint("gateway", "version", name="uq_gateway_configs_version"),
)
