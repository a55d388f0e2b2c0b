"""keyed audit chain: HMAC over every column, event id = chain position, signed head

* ``audit_chain_head.mac``: an HMAC of (count, last_hash), so the head cannot be reset without the key.
* PostgreSQL: ``audit_lock_head()`` and ``audit_append(...)``, SECURITY DEFINER functions owned by
  the role running this migration. The application's role (``qol db create-app-role``) may only
  read the audit tables and append through these functions; EXECUTE is revoked from PUBLIC.
* Existing events are **re-anchored explicitly**: their old SHA-256 chain is checked first, then
  they are numbered 1..N in their order, re-hashed with the HMAC over every column (``note``
  included) and followed by one ``audit_rekeyed`` event that records the old chain's head, length
  and any problems found in it. This needs the audit key: ``qol db upgrade`` passes ``AUDIT_KEY``
  (an empty database needs none). The payload format is copied here on purpose, so this
  migration keeps doing what it did when the app's format moves on.

Downgrade drops the functions and the head's MAC; the re-keyed hashes stay (the old unkeyed
``qol audit verify`` would report them as edited).

Revision ID: i18a
Revises: i15a
Create Date: 2026-12-02
"""

import datetime as dt
import hashlib
import hmac
import json

from alembic import context, op
import sqlalchemy as sa
import qol_app.db


revision = "i18a"
down_revision = "i15a"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
LEGACY_HASHED = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "patient_id",
    "site_id",
    "old",
    "new",
    "reason",
    "request_id",
)
HASHED = (
    "id",
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "entity_type",
    "entity_id",
    "patient_id",
    "site_id",
    "old",
    "new",
    "reason",
    "request_id",
    "prev_hash",
    "note",
)
FORMAT = 2

events = sa.table(
    "audit_events",
    sa.column("id", sa.Integer),
    sa.column("occurred_at", qol_app.db.UTCDateTime()),
    sa.column("actor_type", sa.String),
    sa.column("actor_id", sa.String),
    sa.column("action", sa.String),
    sa.column("entity_type", sa.String),
    sa.column("entity_id", sa.String),
    sa.column("patient_id", sa.Integer),
    sa.column("site_id", sa.Integer),
    sa.column("old", sa.JSON),
    sa.column("new", sa.JSON),
    sa.column("reason", sa.String),
    sa.column("request_id", sa.String),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
    sa.column("note", sa.Text),
)
head = sa.table(
    "audit_chain_head",
    sa.column("id", sa.Integer),
    sa.column("last_hash", sa.String),
    sa.column("count", sa.Integer),
    sa.column("mac", sa.String),
)


def _canonical(payload) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _legacy_digest(prev_hash: str, row) -> str:
    fields = {name: row[name] for name in LEGACY_HASHED}
    fields["occurred_at"] = fields["occurred_at"].astimezone(dt.UTC).isoformat()
    payload = json.dumps({"prev": prev_hash, **fields}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _event_mac(key: bytes, values) -> str:
    fields = {name: values[name] for name in HASHED}
    fields["occurred_at"] = fields["occurred_at"].astimezone(dt.UTC).isoformat()
    return hmac.new(key, _canonical({"format": FORMAT, "event": fields}), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, count: int, last_hash: str) -> str:
    payload = {"format": FORMAT, "head": {"count": count, "last_hash": last_hash}}
    return hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    if bind.dialect.name == "postgresql":
        _create_functions(bind)
    _reanchor(bind)


def _create_functions(bind) -> None:
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    q = f'"{schema}"'
    # search_path pinned: a SECURITY DEFINER function must not resolve names through the caller's path.
    op.execute(
        f"""
        CREATE FUNCTION {q}.audit_lock_head(OUT head_count integer, OUT head_hash text)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        BEGIN
            SELECT h.count, h.last_hash INTO head_count, head_hash
              FROM {q}.audit_chain_head h WHERE h.id = 1 FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO {q}.audit_chain_head (id, last_hash, count) VALUES (1, '{GENESIS}', 0)
                    ON CONFLICT (id) DO NOTHING;
                SELECT h.count, h.last_hash INTO head_count, head_hash
                  FROM {q}.audit_chain_head h WHERE h.id = 1 FOR UPDATE;
            END IF;
        END;
        $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {q}.audit_append(
            p_id integer, p_prev_hash text, p_hash text, p_head_mac text, p_occurred_at timestamptz,
            p_actor_type text, p_actor_id text, p_action text, p_entity_type text, p_entity_id text,
            p_patient_id integer, p_site_id integer, p_old json, p_new json, p_reason text,
            p_request_id text, p_note text
        ) RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            head_count integer;
            head_hash text;
        BEGIN
            SELECT h.count, h.last_hash INTO head_count, head_hash
              FROM {q}.audit_chain_head h WHERE h.id = 1 FOR UPDATE;
            IF NOT FOUND OR p_id IS DISTINCT FROM head_count + 1 OR p_prev_hash IS DISTINCT FROM head_hash THEN
                RAISE EXCEPTION 'audit_append: event % does not follow the chain head (% events, newest %)',
                    p_id, head_count, head_hash;
            END IF;
            INSERT INTO {q}.audit_events (
                id, occurred_at, actor_type, actor_id, action, entity_type, entity_id, patient_id, site_id,
                old, new, reason, request_id, prev_hash, hash, note
            ) VALUES (
                p_id, p_occurred_at, p_actor_type, p_actor_id, p_action, p_entity_type, p_entity_id,
                p_patient_id, p_site_id, p_old, p_new, p_reason, p_request_id, p_prev_hash, p_hash, p_note
            );
            UPDATE {q}.audit_chain_head SET count = p_id, last_hash = p_hash, mac = p_head_mac WHERE id = 1;
        END;
        $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION {q}.audit_lock_head() FROM PUBLIC")
    op.execute(
        f"REVOKE ALL ON FUNCTION {q}.audit_append(integer, text, text, text, timestamptz, text, text, text, "
        "text, text, integer, integer, json, json, text, text, text) FROM PUBLIC"
    )


def _reanchor(bind) -> None:
    rows = bind.execute(sa.select(events).order_by(events.c.id)).mappings().all()
    if not rows:
        return
    key = context.config.attributes.get("audit_key")
    if not key:
        raise RuntimeError(
            f"the audit trail holds {len(rows)} events, which this migration re-keys with the audit key: "
            "run it through `qol db upgrade` (which passes AUDIT_KEY), or pass attributes['audit_key']"
        )
    key = key.encode() if isinstance(key, str) else key
    problems, prev = [], GENESIS
    for row in rows:
        if row["prev_hash"] != prev:
            problems.append(f"event {row['id']}: link broken")
        if _legacy_digest(row["prev_hash"], row) != row["hash"]:
            problems.append(f"event {row['id']}: contents do not match its hash")
        prev = row["hash"]
    old_head = bind.execute(sa.select(head.c.count, head.c.last_hash).where(head.c.id == 1)).first()
    if old_head is None or (old_head.count, old_head.last_hash) != (len(rows), prev):
        problems.append("chain head does not match the stored events")
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete")
    renumbered = [row["id"] for row in rows] != list(range(1, len(rows) + 1))
    if renumbered:
        bind.execute(sa.update(events).values(id=-events.c.id))
        bind.execute(
            sa.update(events).where(events.c.id == sa.bindparam("old_id")).values(id=sa.bindparam("new_id")),
            [{"old_id": -row["id"], "new_id": n} for n, row in enumerate(rows, start=1)],
        )
    prev, updates = GENESIS, []
    for n, row in enumerate(rows, start=1):
        values = dict(row, id=n, prev_hash=prev)
        values["hash"] = _event_mac(key, values)
        updates.append({"event_id": n, "new_prev": prev, "new_hash": values["hash"]})
        prev = values["hash"]
    bind.execute(
        sa.update(events)
        .where(events.c.id == sa.bindparam("event_id"))
        .values(prev_hash=sa.bindparam("new_prev"), hash=sa.bindparam("new_hash")),
        updates,
    )
    if postgresql:
        op.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete")
    anchor = {
        "id": len(rows) + 1,
        "occurred_at": dt.datetime.now(dt.UTC),
        "actor_type": "system",
        "actor_id": "migration",
        "action": "audit_rekeyed",
        "entity_type": "audit_chain",
        "entity_id": None,
        "patient_id": None,
        "site_id": None,
        "old": {
            "events": len(rows),
            "head_count": old_head.count if old_head is not None else None,
            "head_hash": old_head.last_hash if old_head is not None else None,
        },
        "new": {
            "format": "hmac-sha256/2",
            "renumbered": renumbered,
            "legacy_intact": not problems,
            "legacy_problems": problems[:20],
        },
        "reason": "audit chain re-keyed (HMAC over every column) by migration i18a",
        "request_id": None,
        "prev_hash": prev,
        "note": None,
    }
    anchor["hash"] = _event_mac(key, anchor)
    bind.execute(sa.insert(events).values(**anchor))
    bind.execute(sa.delete(head))
    bind.execute(
        sa.insert(head).values(
            id=1, count=anchor["id"], last_hash=anchor["hash"], mac=_head_mac(key, anchor["id"], anchor["hash"])
        )
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION audit_append(integer, text, text, text, timestamptz, text, text, text, text, text, "
            "integer, integer, json, json, text, text, text)"
        )
        op.execute("DROP FUNCTION audit_lock_head()")
    with op.batch_alter_table("audit_chain_head", schema=None) as batch_op:
        batch_op.drop_column("mac")
