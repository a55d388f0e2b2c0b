"""Versioned schedules: the schedule version that created each timepoint; applied amendments;
the date a paper or interview form was completed by the patient.

Rows created before schedules carried a version came from the shipped format 1 schedule
(``conquer_default``, version "1").

Revision ID: i14a
Revises: i14b
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i14a"
down_revision = "i14b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timepoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schedule_version", sa.String(length=64), nullable=True))
    op.execute("UPDATE timepoints SET schedule_version = 'conquer_default@1' WHERE schedule_version IS NULL")
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_on", sa.Date(), nullable=True))
    op.create_table(
        "schedule_amendments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("version_label", sa.String(length=64), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("applied_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_amendments")),
    )


def downgrade() -> None:
    op.drop_table("schedule_amendments")
    with op.batch_alter_table("responses", schema=None) as batch_op:
        batch_op.drop_column("completed_on")
    with op.batch_alter_table("timepoints", schema=None) as batch_op:
        batch_op.drop_column("schedule_version")
