"""The i14b migration carries existing end statuses into the status history, recorded when their
last set_status audit event happened (else at enrolment) (SQLite file)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from qol_app.migrations import alembic_config


def test_existing_end_statuses_enter_the_history(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    command.upgrade(alembic_config(url), "i13a")
    engine = create_engine(url)
    enrolled, recorded = "2026-01-05 02:00:00.000000", "2026-02-20 08:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sites (id, code, name, timezone, default_language, emergency_phone, created_at) "
                "VALUES (1, 'S1', 'Site', 'Asia/Shanghai', 'zh_Hans', '120', :now)"
            ),
            {"now": enrolled},
        )
        for pk, status, date in ((1, "died", "2026-02-18"), (2, "active", None), (3, "lost", "2026-02-01")):
            conn.execute(
                text(
                    "INSERT INTO patients (id, study_id, site_id, arm, randomization_date, language, status, "
                    "status_date, status_reason, link_token_hash, pin_failures, created_at) VALUES (:id, :sid, 1, "
                    "'A', '2026-01-05', 'zh_Hans', :status, :date, 'r', :hash, 0, :now)"
                ),
                {"id": pk, "sid": f"S1-{pk}", "status": status, "date": date, "hash": f"h{pk}", "now": enrolled},
            )
        conn.execute(
            text(
                "INSERT INTO audit_events (id, occurred_at, actor_type, action, entity_type, patient_id, "
                "prev_hash, hash) VALUES (1, :at, 'system', 'set_status', 'patients', 1, :zero, 'x')"
            ),
            {"at": recorded, "zero": "0" * 64},
        )
    command.upgrade(alembic_config(url), "i14b")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT patient_id, status, status_date, kind, recorded_at FROM patient_status_changes "
                "ORDER BY patient_id"
            )
        ).all()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (1, "died", "2026-02-18", "set"),
        (3, "lost", "2026-02-01", "set"),
    ]
    assert rows[0][4].startswith("2026-02-20 08:00") and rows[1][4].startswith("2026-01-05 02:00")
    command.downgrade(alembic_config(url), "i13a")
