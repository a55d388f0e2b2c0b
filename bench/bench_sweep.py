"""The scheduler sweep at trial scale: 5,000 patients, ~250,000 timepoints.

Run: python bench/bench_sweep.py [--patients N] [--only sqlite|postgresql] [--keep]

Builds a synthetic trial directly with bulk inserts (planner output for realistic keys and
windows; statuses, completions, reminders and deaths consistent with "now"), on a SQLite file
(bench/out/) and on a scratch PostgreSQL database (QOL_BENCH_PG_URL, default the local
trust-auth server; dropped afterwards unless --keep). Then it times:

1. a warm-up sweep (absorbs whatever the generator left for the scheduler to do),
2. a sweep when nothing changed (target < 2 s; the status step alone is printed too),
3. a sweep after the clock moved so that ~1% of timepoints change status (plus the reminders,
   call tasks and follow-up extensions that come with it),
4. a full reconcile of every patient (``reconcile_all(full=True)``), rolled back: what the sweep
   would cost if it replanned everyone instead of the patients whose plan can change.

Each line gives wall time and this process's CPU time (the machine may be shared; on PostgreSQL
the server's CPU is not included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from qol_app import create_app
from qol_app.db import db, make_engine
from qol_app.migrations import alembic_config
from qol_app.models import OutboxMessage, Patient, Site, Timepoint, TreatmentEvent
from qol_app.scheduler.jobs import run_sweep
from qol_app.scheduling import (
    SCHEDULES_DIR,
    EventFact,
    PatientFacts,
    derive_status,
    load_schedule,
    local_date_of,
    local_day_start,
    plan_ahead,
)
from qol_app.scheduling.timewindows import zone
from qol_app.services.notifications import reminder_key, window_key
from qol_app.services.timepoints import reconcile_all, sweep_statuses

OUT = Path(__file__).resolve().parent / "out"
NOW = dt.datetime(2026, 6, 1, 3, 17, tzinfo=dt.UTC)  # 11:17 in Shanghai: reminders allowed
D = dt.timedelta(days=1)
PG_URL = os.environ.get("QOL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Quiet:
    """A channel that delivers nowhere (the bench times the database, not a gateway)."""

    def deliver(self, message) -> None:
        return None


CHANNELS = {"sms": Quiet(), "email": Quiet()}


# ---- synthetic trial ------------------------------------------------------------------------
def history(rng: random.Random, arm: str, rand: dt.date, until: dt.date, ids) -> list[EventFact]:
    """Cycles every 21 days (some delayed), pemetrexed-style intrathecal course in arm A,
    progression and end of treatment for some."""
    events: list[EventFact] = []
    day, n = rand + D, 0
    while day <= until and n < 8:
        n += 1
        events.append(EventFact(next(ids), "systemic_cycle", day, n, 21))
        day += dt.timedelta(days=21 + rng.choice((0, 0, 0, 0, 3, 7)))
    if arm == "A":
        offsets = [0, 3, 7, 10, 14, 21, 28, 35] + list(range(63, 400, 28))
        for k, off in enumerate(offsets, start=1):
            if rand + dt.timedelta(days=1 + off) > until:
                break
            events.append(EventFact(next(ids), "intrathecal_dose", rand + dt.timedelta(days=1 + off), k))
    if n == 8 and day <= until:
        events.append(EventFact(next(ids), "progression", day - 5 * D, 1))
        events.append(EventFact(next(ids), "end_of_treatment", day - 4 * D))
    return events


def build(url: str, n_patients: int, seed: int = 7) -> dict[str, int]:
    """Migrate ``url`` and fill it; returns row counts."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
    schedule = load_schedule(SCHEDULES_DIR / "conquer.yaml")
    rng = random.Random(seed)
    ids = iter(range(1, 10**9))
    tp_ids = iter(range(1, 10**9))
    sites = [
        {
            "id": i,
            "code": f"S{i:02d}",
            "name": f"Site {i}",
            "timezone": "Asia/Shanghai",
            "default_language": "zh_Hans",
            "emergency_phone": "120",
            "created_at": NOW,
        }
        for i in range(1, 11)
    ]
    patients, events, tps, outbox = [], [], [], []
    for pid in range(1, n_patients + 1):
        site = sites[pid % len(sites)]
        tz = zone(site["timezone"])
        today = local_date_of(NOW, tz)
        arm = "AB"[pid % 2]
        rand = today - dt.timedelta(days=rng.randint(3, 720))
        survival = dt.timedelta(days=int(rng.expovariate(1 / 100)) + 10)
        died = rand + survival < today
        end = rand + survival if died else today
        hist = history(rng, arm, rand, end, ids)
        patients.append(
            {
                "id": pid,
                "study_id": f"{site['code']}-{pid:05d}",
                "site_id": site["id"],
                "arm": arm,
                "randomization_date": rand,
                "language": "zh_Hans" if pid % 5 else "en",
                "status": "died" if died else "active",
                "status_date": end if died else None,
                "phone": f"138{pid:08d}",
                "link_token_hash": uuid.uuid4().hex,
                "pin_failures": 0,
                "created_at": NOW,
            }
        )
        events += [
            {
                "id": e.id,
                "patient_id": pid,
                "kind": e.kind,
                "number": e.number,
                "date": e.date,
                "cycle_length_days": e.cycle_length_days,
                "created_at": NOW,
            }
            for e in hist
        ]
        facts = PatientFacts(arm, rand, site["timezone"], "died" if died else None, end if died else None)
        ahead = plan_ahead(schedule, facts, hist, today)
        patients[-1]["replan_at"] = None if ahead.changes_on is None else local_day_start(ahead.changes_on, tz)
        for tp in ahead.timepoints:
            tid = next(tp_ids)
            completed = started = None
            if tp.expected and tp.opens_at < NOW - dt.timedelta(hours=2):
                u = rng.random()
                at = min(tp.opens_at + dt.timedelta(hours=rng.randint(9, 20)), NOW - dt.timedelta(hours=1))
                if u < 0.72:
                    completed = started = at
                elif u < 0.77:
                    started = at
            reason = None if tp.expected else tp.not_expected_reason
            status = derive_status(
                tp, NOW, submitted=completed is not None, started=started is not None, not_expected_reason=reason
            )
            tps.append(
                {
                    "id": tid,
                    "patient_id": pid,
                    "key": tp.key,
                    "rule_id": tp.rule_id,
                    "kind": tp.kind,
                    "instruments": list(tp.instruments),
                    "anchor_event_id": tp.anchor.event_id,
                    "anchor_kind": tp.anchor.kind,
                    "anchor_number": tp.anchor.number,
                    "anchor_date": tp.anchor.date,
                    "target_date": tp.target_date,
                    "window_start": tp.window_start,
                    "window_end": tp.window_end,
                    "grace_end": tp.grace_end,
                    "opens_at": tp.opens_at,
                    "closes_at": tp.closes_at,
                    "grace_closes_at": tp.grace_closes_at,
                    "status": status,
                    "status_changed_at": NOW,
                    "not_expected_reason": reason,
                    "started_at": started,
                    "completed_at": completed,
                    "created_at": NOW,
                }
            )
            if tp.expected and tp.opens_at < NOW - D:  # past reminders, already sent
                outbox.append(
                    {
                        "dedupe_key": reminder_key(tid, window_key(tp.opens_at, tp.closes_at), 1, "sms"),
                        "window_key": window_key(tp.opens_at, tp.closes_at),
                        "step": "r1",
                        "kind": "reminder",
                        "channel": "sms",
                        "recipient": patients[-1]["phone"],
                        "patient_id": pid,
                        "timepoint_id": tid,
                        "language": "zh_Hans",
                        "subject": "CONQUER",
                        "body": "reminder",
                        "status": "sent",
                        "created_at": tp.opens_at,
                        "not_before": tp.opens_at,
                        "sent_at": tp.opens_at,
                        "attempts": 1,
                    }
                )
    engine = make_engine(url)
    with engine.begin() as conn:
        for table, rows in (
            (Site, sites),
            (Patient, patients),
            (TreatmentEvent, events),
            (Timepoint, tps),
            (OutboxMessage, outbox),
        ):
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table.__table__), rows[start : start + 5000])
        if engine.dialect.name == "postgresql":
            for table in ("sites", "patients", "treatment_events", "timepoints", "outbox_messages"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return {"patients": len(patients), "events": len(events), "timepoints": len(tps), "outbox": len(outbox)}


# ---- timing ---------------------------------------------------------------------------------
def one_percent_later(app, fraction: float = 0.01) -> tuple[dt.datetime, int]:
    """The instant by which ~``fraction`` of all timepoints have crossed a status boundary."""
    with app.app_context():
        session = db.session
        total = session.scalar(select(func.count(Timepoint.id)))
        next_boundary = []
        for status, column in (
            ("scheduled", Timepoint.opens_at),
            ("open", Timepoint.closes_at),
            ("overdue", Timepoint.grace_closes_at),
        ):
            next_boundary += session.scalars(select(column).where(Timepoint.status == status, column > NOW)).all()
    next_boundary.sort()
    k = max(1, int(total * fraction))
    if len(next_boundary) < k:
        raise SystemExit(f"only {len(next_boundary)} live timepoints; cannot change {k}")
    return next_boundary[k - 1], k


def timed(label: str, app, now: dt.datetime) -> float:
    started, cpu = time.perf_counter(), time.process_time()
    report = run_sweep(app, now, channels=CHANNELS)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    steps = ", ".join(f"{name} {secs * 1000:.0f} ms" for name, secs in report.seconds.items())
    print(f"  {label:<22} {took:7.3f} s  cpu {cpu:6.3f} s   [{steps}]")
    changes = "; ".join(f"{name}: {value}" for name, value in report.steps.items())
    print(f"  {'':<22} {changes}")
    if report.errors:
        print(f"  errors: {report.errors}")
    return took


def bench(name: str, url: str, patients: int) -> None:
    print(f"\n== {name} ({make_url(url).render_as_string(hide_password=True)})")
    started = time.perf_counter()
    counts = build(url, patients)
    print(f"  built {counts} in {time.perf_counter() - started:.1f} s")
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "PUBLIC_BASE_URL": "https://qol.example"})
    timed("warm-up sweep", app, NOW)
    timed("no-change sweep", app, NOW)
    with app.app_context():
        started, cpu = time.perf_counter(), time.process_time()
        counts_status = sweep_statuses(db.session, NOW)
        db.session.commit()
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"  {'no-change status step':<22} {took:7.3f} s  cpu {cpu:6.3f} s   ({dict(counts_status)})")
    later, k = one_percent_later(app)
    print(f"  clock +{(later - NOW).total_seconds() / 3600:.1f} h: {k} timepoints (1%) cross a boundary")
    timed("1%-changed sweep", app, later)
    timed("no-change after that", app, later)
    with app.app_context():
        started, cpu = time.perf_counter(), time.process_time()
        result = reconcile_all(db.session, later, full=True)
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        db.session.rollback()
        print(
            f"  {'full reconcile':<22} {took:7.3f} s  cpu {cpu:6.3f} s   "
            f"({result.patients} patients, {result.changes.changed} changes, rolled back)"
        )
    app.extensions["qol_db"]["engine"].dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.only in (None, "sqlite"):
        OUT.mkdir(exist_ok=True)
        path = OUT / "bench_sweep.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        bench("SQLite", f"sqlite:///{path}", args.patients)
        if not args.keep:
            path.unlink(missing_ok=True)
    if args.only in (None, "postgresql"):
        name = f"qol_bench_{os.getpid()}"
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            bench(
                "PostgreSQL", make_url(PG_URL).set(database=name).render_as_string(hide_password=False), args.patients
            )
        finally:
            if not args.keep:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
