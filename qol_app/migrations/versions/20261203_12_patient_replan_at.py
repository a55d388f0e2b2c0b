"""When the calendar next changes each patient's plan (``patients.replan_at``), so the sweep
reconciles those patients instead of re-deriving the planner's recurrence rule in SQL.

Every existing patient is due at once: the first sweep after the upgrade reconciles them all
and stores the planner's own date.

Revision ID: i12r
Revises: i11b
Create Date: 2026-12-03
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i12r"
down_revision = "i11b"
branch_labels = None
depends_on = None

REPLAN_NOW = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replan_at", qol_app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_patients_replan_at"), ["replan_at"], unique=False)
    patients = sa.table("patients", sa.column("replan_at", qol_app.db.UTCDateTime(timezone=True)))
    op.execute(patients.update().values(replan_at=REPLAN_NOW))


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_replan_at"))
        batch_op.drop_column("replan_at")
