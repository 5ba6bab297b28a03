"""The scanning analysis notes which version of the preceding record it ran first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Issue #13: a record is analysed after the last seconds of the record just before it (same
stream, contiguous), so beats at an hour's boundary are neither lost nor counted twice.
``record_analysis.lead_in`` keeps the ``study_records.id`` of that preceding record's
version (NULL: there was none). When the preceding record arrives later, or a newer version
of it supersedes the one used, the analysis is made again: the scanner compares ids, not
clocks. Analyses made before this migration have NULL and are made again once when they
have a preceding record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("record_analysis") as batch:
        batch.add_column(
            sa.Column("lead_in", Id, nullable=True,
                      comment="study_records.id of the preceding record's version run first")
        )  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("record_analysis") as batch:
        batch.drop_column("lead_in")
