"""Patient status history: every recorded status with the time it was recorded (frozen as-of
exports). Existing end statuses are carried over, recorded when their last ``set_status`` audit
event happened (else when the patient was enrolled).

Revision ID: i14b
Revises: i13a
"""

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i14b"
down_revision = "i13a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_date", sa.Date(), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'died', 'withdrawn', 'lost')", name=op.f("ck_patient_status_changes_status")
        ),
        sa.CheckConstraint("kind IN ('set', 'correction')", name=op.f("ck_patient_status_changes_kind")),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_patient_status_changes_patient_id_patients"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_status_changes")),
    )
    with op.batch_alter_table("patient_status_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patient_status_changes_patient_id"), ["patient_id"], unique=False)
    conn = op.get_bind()
    patients = sa.table(
        "patients",
        sa.column("id", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("status_date", sa.Date()),
        sa.column("status_reason", sa.String()),
        sa.column("created_at", qol_app.db.UTCDateTime(timezone=True)),
    )
    events = sa.table(
        "audit_events",
        sa.column("patient_id", sa.Integer()),
        sa.column("action", sa.String()),
        sa.column("occurred_at", qol_app.db.UTCDateTime(timezone=True)),
    )
    history = sa.table(
        "patient_status_changes",
        sa.column("patient_id", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("status_date", sa.Date()),
        sa.column("reason", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("recorded_at", qol_app.db.UTCDateTime(timezone=True)),
        sa.column("recorded_by", sa.String()),
    )
    last_set = (
        sa.select(sa.func.max(events.c.occurred_at))
        .where(events.c.patient_id == patients.c.id, events.c.action == "set_status")
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(
            patients.c.id, patients.c.status, patients.c.status_date, patients.c.status_reason, patients.c.created_at
        )
        .add_columns(last_set)
        .where(patients.c.status != "active")
        .order_by(patients.c.id)
    ).all()
    if rows:
        conn.execute(
            history.insert(),
            [
                {
                    "patient_id": pk,
                    "status": status,
                    "status_date": date,
                    "reason": reason,
                    "kind": "set",
                    "recorded_at": recorded or created,
                    "recorded_by": "system:migration",
                }
                for pk, status, date, reason, created, recorded in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("patient_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_status_changes_patient_id"))
    op.drop_table("patient_status_changes")
