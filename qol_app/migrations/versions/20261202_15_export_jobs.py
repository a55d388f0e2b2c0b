"""Background export jobs (statistician page; run by the scheduler process).

Revision ID: i15a
Revises: i16a
"""

from alembic import op
import sqlalchemy as sa
import qol_app.db

revision = "i15a"
down_revision = "i16a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("requested_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("started_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("zip_name", sa.String(length=255), nullable=True),
        sa.Column("zip_sha256", sa.String(length=64), nullable=True),
        sa.Column("zip_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.Column("audit_event_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["staff_users.id"], name=op.f("fk_export_jobs_requested_by_staff_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_jobs")),
    )
    with op.batch_alter_table("export_jobs") as batch:
        batch.create_index(batch.f("ix_export_jobs_requested_by"), ["requested_by"], unique=False)
        batch.create_index("ix_export_jobs_status_requested", ["status", "requested_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_jobs") as batch:
        batch.drop_index("ix_export_jobs_status_requested")
        batch.drop_index(batch.f("ix_export_jobs_requested_by"))
    op.drop_table("export_jobs")
