"""Fleet provisioning and operations (issue #14): enrollment tokens, issued certificates,
remote configuration versions, and the host facts of each gateway's status.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("gateways", sa.Column("health", sa.Text(), nullable=True,
                                        comment="JSON: host facts (issue #14)"))
    op.create_table(
        "enroll_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False,
                  comment="sha256 of the token"),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_enroll_tokens_gateway", "enroll_tokens", ["gateway"])
    op.create_table(
        "certificates",
        sa.Column("serial", sa.String(length=48), nullable=False, comment="hex"),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="enroll | renew"),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.Column("not_after", sa.Double(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False, comment="sha256, hex"),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_index("ix_certificates_gateway", "certificates", ["gateway", "not_after"])
    op.create_table(
        "gateway_configs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False, comment="the published JSON"),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.Double(), nullable=True, comment="PUBACK with a success code"),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gateway", "version", name="uq_gateway_configs_version"),
    )


def downgrade() -> None:
    op.drop_table("gateway_configs")
    op.drop_index("ix_certificates_gateway", table_name="certificates")
    op.drop_table("certificates")
    op.drop_index("ix_enroll_tokens_gateway", table_name="enroll_tokens")
    op.drop_table("enroll_tokens")
    op.drop_column("gateways", "health")
