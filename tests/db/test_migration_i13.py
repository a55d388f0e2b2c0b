"""The i13a migration rewrites existing outbox keys into the window-keyed form (SQLite file)."""

from __future__ import annotations

import datetime as dt

from alembic import command
from sqlalchemy import create_engine, text

from qol_app.migrations import alembic_config


def test_old_outbox_keys_get_their_window_and_call_tasks_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    command.upgrade(alembic_config(url), "0002")
    engine = create_engine(url)
    opens, closes = "2026-03-20 16:00:00.000000", "2026-03-27 16:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO sites (id, code, name, timezone, default_language, emergency_phone, created_at) "
                "VALUES (1, 'S1', 'Site', 'Asia/Shanghai', 'zh_Hans', '120', :now)"
            ),
            {"now": opens},
        )
        conn.execute(
            text(
                "INSERT INTO patients (id, study_id, site_id, arm, randomization_date, language, status, "
                "link_token_hash, pin_failures, created_at) VALUES (1, 'S1-1', 1, 'A', '2026-03-02', 'zh_Hans', "
                "'active', 'h', 0, :now)"
            ),
            {"now": opens},
        )
        conn.execute(
            text(
                "INSERT INTO timepoints (id, patient_id, key, rule_id, kind, instruments, anchor_kind, anchor_date, "
                "target_date, window_start, window_end, grace_end, opens_at, closes_at, grace_closes_at, status, "
                "created_at) VALUES (7, 1, 'sys-c1', 'post_cycle', 'questionnaire', '[]', 'systemic_cycle', "
                "'2026-03-03', '2026-03-23', '2026-03-21', '2026-03-27', '2026-03-30', :o, :c, :c, 'open', :o)"
            ),
            {"o": opens, "c": closes},
        )
        for i, (key, kind, channel, status) in enumerate(
            [
                ("tp:7:r1:sms", "reminder", "sms", "sent"),
                ("tp:7:r2:sms", "reminder", "sms", "skipped"),
                ("tp:7:call:task", "call_task", "task", "sent"),
                ("alert:3:4:sms", "alert", "sms", "sent"),
            ],
            start=1,
        ):
            conn.execute(
                text(
                    "INSERT INTO outbox_messages (id, dedupe_key, kind, channel, patient_id, timepoint_id, language, "
                    "subject, body, status, created_at, attempts) VALUES (:id, :key, :kind, :channel, 1, "
                    ":tp, 'zh_Hans', 's', 'b', :status, :now, 0)"
                ),
                {
                    "id": i,
                    "key": key,
                    "kind": kind,
                    "channel": channel,
                    "status": status,
                    "now": opens,
                    "tp": None if kind == "alert" else 7,
                },
            )
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, dedupe_key, status, window_key, step FROM outbox_messages ORDER BY id")
        ).all()
    window = "w202603201600-202603271600"
    assert [tuple(r) for r in rows] == [
        (1, f"tp:7:{window}:r1:sms", "sent", window, "r1"),
        (2, f"tp:7:{window}:r2:sms~void2", "skipped", window, "r2"),
        (3, f"tp:7:{window}:call", "open", window, "call"),
        (4, "alert:3:4:sms", "sent", None, None),
    ]
    from qol_app.services.notifications import call_task_key, reminder_key, window_key

    utc = dt.UTC
    assert window == window_key(dt.datetime(2026, 3, 20, 16, tzinfo=utc), dt.datetime(2026, 3, 27, 16, tzinfo=utc))
    assert rows[0][1] == reminder_key(7, window, 1, "sms") and rows[2][1] == call_task_key(7, window)
    command.downgrade(alembic_config(url), "0002")
    engine.dispose()
