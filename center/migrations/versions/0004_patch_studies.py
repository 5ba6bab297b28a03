"""Long-term patch studies (issue #13): studies, record versions, chunks, analysis.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Full disclosure: each hourly WFDB record of a patch arrives in checksummed chunks
(``record_chunks``, the signal bytes kept in the database), is verified whole and
confirmed to the gateway (``study_records``, one row per version), belongs to a study
(``patch_studies``) and is scanned once (``record_analysis``: beats, classes, quality).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.Double


def upgrade() -> None:
    op.create_table(
        "patch_studies",
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
    )
    op.create_index("ix_patch_studies_device", "patch_studies",
                    ["gateway", "device", "started_at"])
    op.create_table(
        "study_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("study", Id, sa.ForeignKey("patch_studies.id"), nullable=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("name", sa.String(160), nullable=False,
                  comment="WFDB record name on the gateway"),
        sa.Column("version", sa.Integer, nullable=False, comment="1, 2, ... after late backfill"),
        sa.Column("sha256", sa.String(64), nullable=False, comment="of the .hea then .dat bytes"),
        sa.Column("size", sa.BigInteger, nullable=False, comment=".dat bytes"),
        sa.Column("header", sa.Text, nullable=False, comment="the .hea text"),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False,
                  comment="receiving | verified | failed"),
        sa.Column("fs", sa.Double, nullable=True),
        sa.Column("n_sig", sa.Integer, nullable=True),
        sa.Column("leads", sa.String(255), nullable=False, server_default=""),
        sa.Column("first_seq", sa.BigInteger, nullable=True),
        sa.Column("start_at", Time, nullable=True),
        sa.Column("samples", sa.BigInteger, nullable=True),
        sa.Column("missing", sa.BigInteger, nullable=True, comment="samples never received"),
        sa.Column("received_at", Time, nullable=False, comment="first chunk"),
        sa.Column("verified_at", Time, nullable=True),
        sa.UniqueConstraint("gateway", "device", "name", "version",
                            name="uq_study_records_version"),
    )
    op.create_index("ix_study_records_study", "study_records", ["study", "start_at"])
    op.create_index("ix_study_records_state", "study_records", ["state", "verified_at"])
    op.create_table(
        "record_chunks",
        sa.Column("record", Id, sa.ForeignKey("study_records.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False, comment="signal bytes, as sent"),
    )
    op.create_table(
        "record_analysis",
        sa.Column("record", Id, sa.ForeignKey("study_records.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("beats", sa.LargeBinary, nullable=False,
                  comment="R peaks, int32 LE from record start"),
        sa.Column("labels", sa.LargeBinary, nullable=False,
                  comment="one byte per beat: N S V Q"),
        sa.Column("quality", sa.LargeBinary, nullable=False,
                  comment="per second: 0-100 quality index x 100, 255 no sample"),
        sa.Column("recorded_s", sa.Double, nullable=False),
        sa.Column("analysable_s", sa.Double, nullable=False),
        sa.Column("analysed_at", Time, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("record_analysis")
    op.drop_table("record_chunks")
    op.drop_index("ix_study_records_state", table_name="study_records")
    op.drop_index("ix_study_records_study", table_name="study_records")
    op.drop_table("study_records")
    op.drop_index("ix_patch_studies_device", table_name="patch_studies")
    op.drop_table("patch_studies")
