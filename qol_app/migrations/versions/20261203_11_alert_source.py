"""Alerts: where the answers came from (saved but not sent, sent, staff entry, correction) and
the triggering answers as they are now when they changed later.

Revision ID: i11a
Revises: i14a
"""

import sqlalchemy as sa
from alembic import op

revision = "i11a"
down_revision = "i14a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=16), server_default="sent", nullable=False))
        batch_op.add_column(sa.Column("changed_answers", sa.JSON(), nullable=True))
        batch_op.create_check_constraint("source", "source IN ('saved_not_sent', 'sent', 'staff_entry', 'correction')")


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_alerts_source"), type_="check")
        batch_op.drop_column("changed_answers")
        batch_op.drop_column("source")
