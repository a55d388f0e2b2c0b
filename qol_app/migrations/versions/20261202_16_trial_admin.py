"""Trial administration: monitor and data-manager roles, staff TOTP and recovery codes, sign-in
throttles, data locks, demo marks, patient display preferences.

Existing demo data (from ``qol demo`` before demo marks existed) is marked here, so ``qol demo``
keeps working on a developer's database: sites S01/S02 named "... demo hospital", accounts with a
``@demo.invalid`` e-mail, and patients whose enrolment the audit trail credits to ``system:demo``.

Revision ID: i16a
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa
import qol_app.db


revision = "i16a"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('nurse', 'investigator', 'statistician', 'admin')"
NEW_ROLES = "role IN ('nurse', 'investigator', 'statistician', 'admin', 'monitor', 'data_manager')"


def _sqlite_foreign_keys_off() -> None:
    """SQLite rebuilds ``staff_users`` to change its CHECK; with foreign keys on, dropping the old
    table would cascade to the memberships. The pragma only works outside a transaction, which is
    where a migration run starting at 0002 is; on a fresh database the tables are empty anyway."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA foreign_keys=OFF")


def upgrade() -> None:
    _sqlite_foreign_keys_off()
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_constraint(op.f("ck_staff_users_role"), type_="check")
        batch.create_check_constraint("role", NEW_ROLES)
        batch.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("totp_enabled_at", qol_app.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("display_preferences", sa.JSON(), nullable=True))
    op.create_table(
        "staff_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["staff_users.id"],
            name=op.f("fk_staff_recovery_codes_user_id_staff_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_staff_recovery_codes_code_hash")),
    )
    op.create_index(op.f("ix_staff_recovery_codes_user_id"), "staff_recovery_codes", ["user_id"], unique=False)
    op.create_table(
        "signin_throttles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("scope IN ('account', 'address')", name=op.f("ck_signin_throttles_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_throttles")),
        sa.UniqueConstraint("scope", "key", name=op.f("uq_signin_throttles_scope_key")),
    )
    op.create_table(
        "data_locks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("locked_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", qol_app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", qol_app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("release_reason", sa.String(length=255), nullable=True),
        sa.CheckConstraint("scope IN ('trial', 'site', 'patient')", name=op.f("ck_data_locks_scope")),
        sa.CheckConstraint(
            "(scope = 'trial' AND site_id IS NULL AND patient_id IS NULL)"
            " OR (scope = 'site' AND site_id IS NOT NULL AND patient_id IS NULL)"
            " OR (scope = 'patient' AND patient_id IS NOT NULL)",
            name=op.f("ck_data_locks_target"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_data_locks_patient_id_patients"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_data_locks_site_id_sites"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_locks")),
    )
    op.create_index(op.f("ix_data_locks_patient_id"), "data_locks", ["patient_id"], unique=False)
    op.create_index(op.f("ix_data_locks_released_at"), "data_locks", ["released_at"], unique=False)
    op.create_index(op.f("ix_data_locks_site_id"), "data_locks", ["site_id"], unique=False)
    op.create_table(
        "demo_records",
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", "entity_id", name=op.f("pk_demo_records")),
    )
    _mark_existing_demo_data()


def _mark_existing_demo_data() -> None:
    op.execute(
        "INSERT INTO demo_records (entity_type, entity_id) SELECT 'sites', id FROM sites "
        "WHERE code IN ('S01', 'S02') AND name LIKE '% demo hospital'"
    )
    op.execute(
        "INSERT INTO demo_records (entity_type, entity_id) SELECT 'staff_users', id FROM staff_users "
        "WHERE email LIKE '%@demo.invalid'"
    )
    cast = "CAST(p.id AS VARCHAR(64))"
    op.execute(
        "INSERT INTO demo_records (entity_type, entity_id) SELECT DISTINCT 'patients', p.id FROM patients p "
        "JOIN audit_events a ON a.entity_type = 'patients' AND a.action = 'enroll' AND a.entity_id = "
        f"{cast} AND a.actor_type = 'system' AND a.actor_id = 'demo'"
    )


def downgrade() -> None:
    op.drop_table("demo_records")
    op.drop_index(op.f("ix_data_locks_site_id"), table_name="data_locks")
    op.drop_index(op.f("ix_data_locks_released_at"), table_name="data_locks")
    op.drop_index(op.f("ix_data_locks_patient_id"), table_name="data_locks")
    op.drop_table("data_locks")
    op.drop_table("signin_throttles")
    op.drop_index(op.f("ix_staff_recovery_codes_user_id"), table_name="staff_recovery_codes")
    op.drop_table("staff_recovery_codes")
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("display_preferences")
    op.execute("UPDATE staff_users SET active = false, role = 'nurse' WHERE role IN ('monitor', 'data_manager')")
    _sqlite_foreign_keys_off()
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_enabled_at")
        batch.drop_column("totp_secret")
        batch.drop_constraint(op.f("ck_staff_users_role"), type_="check")
        batch.create_check_constraint("role", OLD_ROLES)
