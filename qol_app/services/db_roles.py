"""The PostgreSQL role the web app and scheduler connect as: neither owner nor superuser.

Migrations run as the owner of the schema (``qol db upgrade``). The app's role gets only what
the app does: read and write the application tables, read the audit tables, and append to the
audit trail through the owner's ``audit_lock_head()`` / ``audit_append(...)`` functions. So with
the app's credentials nobody can edit, delete or truncate audit rows, move the chain head, drop
or disable the append-only trigger (only an owner can), or replace the functions.

Run :func:`grant_app_role` again after every ``qol db upgrade``: a migration's new tables get
their grants then (it is idempotent, and it first revokes what an older version granted).
"""

from __future__ import annotations

import dataclasses
import re

from sqlalchemy import Connection, text

#: Tables the app role may only read (the audit trail is appended through functions).
READ_ONLY_TABLES = ("audit_events", "audit_chain_head", "alembic_version")
AUDIT_FUNCTIONS = (
    "audit_lock_head()",
    "audit_append(integer, text, text, text, timestamp with time zone, text, text, text, text, text, "
    "integer, integer, json, json, text, text, text)",
)
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleError(ValueError):
    """The role cannot be set up as asked (bad name, wrong database, not run as the owner...)."""


@dataclasses.dataclass(frozen=True)
class RoleReport:
    role: str
    created: bool
    read_write: tuple[str, ...]
    read_only: tuple[str, ...]
    sequences: tuple[str, ...]


def _quote(conn: Connection, name: str) -> str:
    return conn.exec_driver_sql("SELECT quote_ident(%(n)s)", {"n": name}).scalar_one()


def _literal(conn: Connection, value: str) -> str:
    return conn.exec_driver_sql("SELECT quote_literal(%(v)s)", {"v": value}).scalar_one()


def grant_app_role(conn: Connection, role: str, *, password: str | None = None) -> RoleReport:
    """Create ``role`` (LOGIN, no other attribute) if missing and give it exactly the app's grants.

    Runs on ``conn`` as the schema's owner (the role that ran the migrations), inside the
    caller's transaction. A ``password`` is set when given (else the role logs in only through
    peer, certificate or trust authentication, or a password set later). ``RoleError`` when the
    role would be the owner itself, or the database is not PostgreSQL or not migrated.
    """
    if conn.dialect.name != "postgresql":
        raise RoleError("an application role is a PostgreSQL set-up; SQLite has no roles")
    if not _ROLE_NAME.match(role):
        raise RoleError("a role name is lower-case letters, digits and _, starting with a letter or _")
    me, schema, database = conn.execute(text("SELECT current_user, current_schema(), current_database()")).one()
    if role == me:
        raise RoleError(f"{role} is the role running this command (the owner); choose another name")
    owner = conn.execute(
        text("SELECT tableowner FROM pg_tables WHERE schemaname = :s AND tablename = 'audit_events'"), {"s": schema}
    ).scalar()
    if owner is None:
        raise RoleError(f"schema {schema} has no audit_events table: run `qol db upgrade` first")
    if owner == role:
        raise RoleError(f"{role} owns the tables; the application role must not be their owner")
    missing = conn.execute(text("SELECT to_regprocedure('audit_lock_head()') IS NULL")).scalar_one()
    if missing:
        raise RoleError("the audit functions are missing: run `qol db upgrade` first")
    q_role, q_schema, q_db = _quote(conn, role), _quote(conn, schema), _quote(conn, database)
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar() is not None
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
    if exists:
        member_of = conn.execute(
            text("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = :r"),
            {"r": role},
        ).scalar_one()
        if member_of:
            raise RoleError(f"{role} is a member of other roles and could act as them; use a fresh role")
        conn.exec_driver_sql(f"ALTER ROLE {q_role} {attributes}")
    else:
        conn.exec_driver_sql(f"CREATE ROLE {q_role} {attributes}")
    if password:
        conn.exec_driver_sql(f"ALTER ROLE {q_role} PASSWORD {_literal(conn, password)}")
    tables = tuple(
        conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY tablename"), {"s": schema}
        ).scalars()
    )
    audit_sequence = conn.execute(
        text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": f"{schema}.audit_events"}
    ).scalar()
    sequences = tuple(
        name
        for name in conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s ORDER BY sequencename"), {"s": schema}
        ).scalars()
        if audit_sequence is None or f"{schema}.{name}" != audit_sequence.replace('"', "")
    )
    conn.exec_driver_sql(f"GRANT CONNECT ON DATABASE {q_db} TO {q_role}")
    conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {q_schema} TO {q_role}")
    conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {q_schema} FROM {q_role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {q_schema} FROM {q_role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {q_schema} FROM {q_role}")
    conn.exec_driver_sql(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {q_schema} FROM {q_role}")
    read_write = tuple(t for t in tables if t not in READ_ONLY_TABLES)
    read_only = tuple(t for t in tables if t in READ_ONLY_TABLES)
    for table in read_write:
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {q_schema}.{_quote(conn, table)} TO {q_role}")
    for table in read_only:
        conn.exec_driver_sql(f"GRANT SELECT ON {q_schema}.{_quote(conn, table)} TO {q_role}")
    for sequence in sequences:
        conn.exec_driver_sql(f"GRANT USAGE, SELECT ON SEQUENCE {q_schema}.{_quote(conn, sequence)} TO {q_role}")
    for function in AUDIT_FUNCTIONS:
        conn.exec_driver_sql(f"GRANT EXECUTE ON FUNCTION {q_schema}.{function} TO {q_role}")
    return RoleReport(role, not exists, read_write, read_only, sequences)
