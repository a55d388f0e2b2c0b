"""scheduler lease row (one scheduler per database on SQLite too) and per-process heartbeats

Revision ID: i18b
Revises: i18a
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa
import qol_app.db


revision = "i18b"
down_revision = "i18a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("acquired_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_leases")),
    )
    with op.batch_alter_table("scheduler_heartbeats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_at", qol_app.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_heartbeats", schema=None) as batch_op:
        batch_op.drop_column("started_at")
    op.drop_table("scheduler_leases")
