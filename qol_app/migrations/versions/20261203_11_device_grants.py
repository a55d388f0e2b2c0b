"""Device grants: a patient who signed out may sign in again on the same device with the PIN alone.

Revision ID: i11b
Revises: i11a
"""

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i11b"
down_revision = "i11a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("created_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_device_grants_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_grants")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_device_grants_token_hash")),
    )
    op.create_index("ix_device_grants_patient_id", "device_grants", ["patient_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_device_grants_patient_id", table_name="device_grants")
    op.drop_table("device_grants")
