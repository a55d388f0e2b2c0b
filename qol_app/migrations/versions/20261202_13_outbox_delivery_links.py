"""Outbox: window key, step, SMS template and parameters, provider id, fallback, call-task
outcomes; reminder links (hashed tokens).

Revision ID: i13a
Revises: i18b
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

import qol_app.db

revision = "i13a"
down_revision = "i18b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("step", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("template", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("params", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("fallback_of_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("outcome_at", qol_app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("outcome_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outcome_note", sa.String(length=255), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_messages_fallback_of_id_outbox_messages"),
            "outbox_messages",
            ["fallback_of_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_messages_outcome_by_staff_users"), "staff_users", ["outcome_by"], ["id"]
        )
        batch_op.create_index("ix_outbox_messages_timepoint_id", ["timepoint_id"], unique=False)
    # Call tasks used to be marked "sent" by the scheduler; they are work for nurses: reopen them.
    op.execute("UPDATE outbox_messages SET status = 'open' WHERE kind = 'call_task' AND status = 'sent'")
    _backfill_keys()

    op.create_table(
        "reminder_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("timepoint_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("window_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["outbox_messages.id"], name=op.f("fk_reminder_links_message_id_outbox_messages")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_reminder_links_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["timepoint_id"], ["timepoints.id"], name=op.f("fk_reminder_links_timepoint_id_timepoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminder_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_reminder_links_token_hash")),
    )
    with op.batch_alter_table("reminder_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reminder_links_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_reminder_links_timepoint_id"), ["timepoint_id"], unique=False)


def _window_key(opens_at, closes_at) -> str:
    # Frozen copy of qol_app.services.reminder_links.window_key (migrations never import app code).
    fmt = "%Y%m%d%H%M"
    return f"w{opens_at.astimezone(dt.UTC).strftime(fmt)}-{closes_at.astimezone(dt.UTC).strftime(fmt)}"


def _backfill_keys() -> None:
    """Old keys (tp:12:r1:sms, tp:12:call:task) in the window-keyed form, so reminders already
    sent for a window still open are not sent again after the upgrade; skipped rows free their key."""
    bind = op.get_bind()
    outbox = sa.table(
        "outbox_messages",
        sa.column("id", sa.Integer()),
        sa.column("dedupe_key", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("status", sa.String()),
        sa.column("timepoint_id", sa.Integer()),
        sa.column("window_key", sa.String()),
        sa.column("step", sa.String()),
    )
    timepoints = sa.table(
        "timepoints",
        sa.column("id", sa.Integer()),
        sa.column("opens_at", qol_app.db.UTCDateTime(timezone=True)),
        sa.column("closes_at", qol_app.db.UTCDateTime(timezone=True)),
    )
    rows = bind.execute(
        sa.select(
            outbox.c.id,
            outbox.c.dedupe_key,
            outbox.c.kind,
            outbox.c.status,
            timepoints.c.opens_at,
            timepoints.c.closes_at,
        )
        .join(timepoints, timepoints.c.id == outbox.c.timepoint_id)
        .where(outbox.c.kind.in_(("reminder", "call_task")), outbox.c.window_key.is_(None))
    ).all()
    for row in rows:
        parts = row.dedupe_key.split(":")
        if len(parts) != 4 or parts[0] != "tp":
            continue
        window = _window_key(row.opens_at, row.closes_at)
        if parts[2] == "call":
            key, step = f"tp:{parts[1]}:{window}:call", "call"
        else:
            key, step = f"tp:{parts[1]}:{window}:{parts[2]}:{parts[3]}", parts[2]
        if row.status == "skipped":
            key = f"{key}~void{row.id}"
        bind.execute(outbox.update().where(outbox.c.id == row.id).values(dedupe_key=key, window_key=window, step=step))


def downgrade() -> None:
    with op.batch_alter_table("reminder_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reminder_links_timepoint_id"))
        batch_op.drop_index(batch_op.f("ix_reminder_links_patient_id"))
    op.drop_table("reminder_links")
    op.execute("UPDATE outbox_messages SET status = 'sent' WHERE kind = 'call_task' AND status IN ('open', 'done')")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_timepoint_id")
        batch_op.drop_constraint(batch_op.f("fk_outbox_messages_outcome_by_staff_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_outbox_messages_fallback_of_id_outbox_messages"), type_="foreignkey")
        for column in (
            "outcome_note",
            "outcome_by",
            "outcome_at",
            "outcome",
            "fallback_of_id",
            "provider_message_id",
            "params",
            "template",
            "step",
            "window_key",
        ):
            batch_op.drop_column(column)
