"""Licensed-wording recordings, and how each response was shown (display mode, read-aloud, audio).

Revision ID: i17a
Revises: i12r
"""

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i17a"
down_revision = "i12r"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wording_audio",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("imported_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wording_audio")),
        sa.UniqueConstraint("sha256", name=op.f("uq_wording_audio_sha256")),
    )
    with op.batch_alter_table("responses") as batch:
        batch.add_column(sa.Column("display_mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("read_aloud_used", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("audio_used", sa.Boolean(), nullable=True))
        batch.create_check_constraint("display_mode", "display_mode IN ('default', 'large_print', 'mixed')")


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_constraint(op.f("ck_responses_display_mode"), type_="check")
        batch.drop_column("audio_used")
        batch.drop_column("read_aloud_used")
        batch.drop_column("display_mode")
    op.drop_table("wording_audio")
