"""Dashboard and patient page at trial scale: time, SQL query count, and a hand-written aggregate.

Run: python bench/bench_dashboard.py [--patients 5000] [--site-patients 2000] [--database-url URL]

Builds a migrated database (a temporary SQLite file unless --database-url is given) with bulk
inserts: 5,000 patients over three sites, each with a baseline, 21-day cycles until death or
today, nadir diaries for every cycle and intrathecal diaries in arm A, in realistic states
(completed on time / late, missed with and without a reason, partial, not expected after
death). Then, as a nurse of the 2,000-patient site, it times the dashboard and one patient page
through the real app (test client, no network), counts their SQL statements, and checks the
compliance service against one hand-written SQL aggregate computing the same numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert, select, text

from qol_app import create_app
from qol_app.db import db
from qol_app.models import Alert, Answer, Patient, Response, Score, Site, Timepoint
from qol_app.scheduling.timewindows import day_after_start, local_day_start
from qol_app.scoring import score
from qol_app.services import compliance, staff
from qol_app.services.audit import Actor

NOW = dt.datetime(2026, 6, 1, 4, 0, tzinfo=dt.UTC)
TZ = ZoneInfo("Asia/Shanghai")
TODAY = NOW.astimezone(TZ).date()
PASSWORD = "bench nurse password"
QOL = ["eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l"]
REASONS = ["too_ill", "hospitalised", "cognitive_impairment", "refused", "technical", "forgot", "site_error"]


def _tp(
    pid: int,
    key: str,
    rule: str,
    kind: str,
    target: dt.date,
    before: int,
    after: int,
    grace: int,
    anchor: str,
    number: int | None,
    end: dt.date | None,
    rng: random.Random,
) -> dict:
    start, stop = target - dt.timedelta(days=before), target + dt.timedelta(days=after)
    row = {
        "patient_id": pid,
        "key": key,
        "rule_id": rule,
        "kind": kind,
        "instruments": QOL if kind == "questionnaire" else ["symptom_diary"],
        "anchor_kind": anchor,
        "anchor_number": number,
        "anchor_date": target,
        "target_date": target,
        "window_start": start,
        "window_end": stop,
        "grace_end": stop + dt.timedelta(days=grace),
        "opens_at": local_day_start(start, TZ),
        "closes_at": day_after_start(stop, TZ),
        "grace_closes_at": day_after_start(stop + dt.timedelta(days=grace), TZ),
        "status": "scheduled",
        "completed_at": None,
        "started_at": None,
        "missed_reason": None,
        "not_expected_reason": None,
        "created_at": NOW,
    }
    if end is not None and target > end:
        row.update(status="not_expected", not_expected_reason="died")
    elif row["opens_at"] > NOW:
        pass
    elif row["closes_at"] > NOW:
        row["status"] = "open"
    else:
        draw = rng.random()
        if draw < 0.62:
            row.update(status="completed", completed_at=row["opens_at"] + (row["closes_at"] - row["opens_at"]) / 2)
        elif draw < 0.72:
            row.update(status="completed", completed_at=row["closes_at"] + dt.timedelta(hours=6))
        elif draw < 0.76:
            row.update(status="partial", started_at=row["opens_at"] + dt.timedelta(hours=1))
        else:
            row["status"] = "missed"
            if draw < 0.9:
                row["missed_reason"] = rng.choice(REASONS)
        if row["status"] in ("partial", "missed") and row["grace_closes_at"] > NOW:
            row["status"] = "overdue"
    return row


def patient_rows(pid: int, arm: str, rng: random.Random) -> tuple[dt.date, dt.date | None, list[dict]]:
    rand = TODAY - dt.timedelta(days=rng.randint(5, 240))
    survival = int(rng.expovariate(1 / 130))
    end = rand + dt.timedelta(days=survival) if rand + dt.timedelta(days=survival) < TODAY else None
    rows = [_tp(pid, "baseline", "baseline", "questionnaire", rand, 7, 0, 3, "randomization", None, end, rng)]
    cycle_start, n = rand + dt.timedelta(days=2), 1
    last = min(end or TODAY, TODAY)
    while cycle_start <= last:
        rows.append(
            _tp(
                pid,
                f"sys-c{n}",
                "after_systemic_cycle",
                "questionnaire",
                cycle_start + dt.timedelta(days=21),
                3,
                3,
                3,
                "systemic_cycle",
                n,
                end,
                rng,
            )
        )
        days = set(range(7, 15)) | (set(range(1, 8)) if arm == "A" and n <= 2 else set())
        for d in sorted(days):
            day = cycle_start + dt.timedelta(days=d)
            rule = "nadir_diary" if d >= 7 else "intrathecal_diary"
            rows.append(
                _tp(pid, f"diary-{day.isoformat()}", rule, "diary", day, 0, 0, 1, "systemic_cycle", n, end, rng)
            )
        cycle_start += dt.timedelta(days=21 + rng.choice([0, 0, 0, 3, 7]))
        n += 1
    return rand, end, rows


def build(session, patients: int, site_patients: int, seed: int) -> tuple[int, int]:
    """Bulk-insert the trial; returns (site id of the big site, id of a long-followed patient there)."""
    rng = random.Random(seed)
    sizes = [site_patients] + [
        (patients - site_patients) // 2,
        patients - site_patients - (patients - site_patients) // 2,
    ]
    sites = []
    for i, _ in enumerate(sizes, start=1):
        site = Site(code=f"B{i:02d}", name=f"Bench site {i}", timezone="Asia/Shanghai", emergency_phone="120")
        session.add(site)
        sites.append(site)
    session.flush()
    patient_rows_, tp_rows, pid = [], [], 0
    for site, size in zip(sites, sizes):
        for _ in range(size):
            pid += 1
            arm = "AB"[pid % 2]
            rand, end, rows = patient_rows(pid, arm, rng)
            patient_rows_.append(
                {
                    "id": pid,
                    "study_id": f"{site.code}-{pid:05d}",
                    "site_id": site.id,
                    "arm": arm,
                    "randomization_date": rand,
                    "consent_date": rand,
                    "language": "zh_Hans",
                    "status": "died" if end else "active",
                    "status_date": end,
                    "link_token_hash": hashlib.sha256(f"bench-{pid}".encode()).hexdigest(),
                    "created_at": NOW,
                    "pin_failures": 0,
                }
            )
            tp_rows.extend(rows)
    session.execute(insert(Patient), patient_rows_)
    for i in range(0, len(tp_rows), 20000):
        session.execute(insert(Timepoint), tp_rows[i : i + 20000])
    # Responses for every completed questionnaire form (respondent/mode shares), revision 0.
    completed = session.execute(
        select(Timepoint.id, Timepoint.patient_id, Timepoint.completed_at, Timepoint.kind).where(
            Timepoint.status == "completed"
        )
    ).all()
    respondents = ["self"] * 6 + ["self_assisted"] * 3 + ["proxy"]
    responses = []
    for tp_id, patient_id, at, kind in completed:
        instruments = QOL if kind == "questionnaire" else ["symptom_diary"]
        who = rng.choice(respondents)
        for instrument in instruments:
            responses.append(
                {
                    "timepoint_id": tp_id,
                    "patient_id": patient_id,
                    "instrument_id": instrument,
                    "instrument_version": "1",
                    "revision": 0,
                    "language": "zh_Hans",
                    "wording_version": "bench",
                    "respondent": who,
                    "mode": "web",
                    "status": "submitted",
                    "started_at": at,
                    "submitted_at": at,
                }
            )
    for i in range(0, len(responses), 20000):
        session.execute(insert(Response), responses[i : i + 20000])
    target = _page_patient(session, sites[0].id)
    _scores_and_answers(session, target, rng)
    session.execute(
        insert(Alert),
        [
            {
                "patient_id": pid_,
                "level": rng.choice(["red", "amber"]),
                "initial_level": "amber",
                "rules": [{"id": "headache_severe"}],
                "triggering_answers": {"headache": 3},
                "raised_at": NOW - dt.timedelta(hours=rng.randint(1, 30)),
            }
            for pid_ in rng.sample(range(1, site_patients + 1), 25)
        ],
    )
    if session.bind.dialect.name == "postgresql":
        for table in ("patients", "timepoints", "responses"):
            session.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    staff.create_user(
        session,
        Actor.system("bench"),
        username="bench.nurse",
        full_name="Bench nurse",
        role="nurse",
        password=PASSWORD,
        sites=[sites[0]],
        now=NOW,
    )
    session.commit()
    print(f"built: {patients} patients, {len(tp_rows)} timepoints, {len(responses)} responses")
    return sites[0].id, target


def _page_patient(session, site_id: int) -> int:
    """The big site's patient with the most timepoints (the heaviest patient page)."""
    return session.execute(
        text(
            "SELECT t.patient_id FROM timepoints t JOIN patients p ON p.id = t.patient_id WHERE p.site_id = :s "
            "GROUP BY t.patient_id ORDER BY count(*) DESC LIMIT 1"
        ),
        {"s": site_id},
    ).scalar_one()


def _scores_and_answers(session, patient_id: int, rng: random.Random) -> None:
    """Real scores (the scorer) and diary answers for the page patient, so charts and heat map draw."""
    items = {
        "eortc_qlq_c30": [f"q{i}" for i in range(1, 31)],
        "eortc_qlq_bn20": [f"q{i}" for i in range(1, 21)],
        "eq5d5l": ["mo", "sc", "ua", "pd", "ad", "vas"],
    }
    diary_items = [
        "chills",
        "headache",
        "neck_stiffness",
        "nausea",
        "vomiting",
        "back_pain",
        "vision",
        "new_weakness",
        "bladder_bowel",
        "confusion",
        "seizure",
        "ommaya_site",
    ]
    rows = session.execute(select(Response.id, Response.instrument_id).where(Response.patient_id == patient_id)).all()
    answers, scores = [], []
    for response_id, instrument in rows:
        if instrument == "symptom_diary":
            for item in diary_items:
                high = (
                    1
                    if item in ("chills", "neck_stiffness", "new_weakness", "bladder_bowel", "confusion", "seizure")
                    else 4
                )
                answers.append(
                    {
                        "response_id": response_id,
                        "item_id": item,
                        "value": rng.randint(0, high),
                        "skipped": False,
                        "answered_at": NOW,
                    }
                )
            continue
        values = {
            i: (
                rng.randint(0, 100)
                if i == "vas"
                else rng.randint(1, 7 if i in ("q29", "q30") else (5 if instrument == "eq5d5l" else 4))
            )
            for i in items[instrument]
        }
        for code, value in score(instrument, values).items():
            scores.append(
                {
                    "response_id": response_id,
                    "scale": code,
                    "value": value,
                    "n_items": None,
                    "scoring_version": "bench",
                    "computed_at": NOW,
                }
            )
    if answers:
        session.execute(insert(Answer), answers)
    if scores:
        session.execute(insert(Score), scores)


HAND_SQL = """
SELECT p.arm, t.kind, t.rule_id, CASE WHEN t.kind = 'diary' THEN NULL ELSE t.key END AS grp,
  SUM(CASE WHEN t.status = 'completed' AND t.completed_at < t.closes_at THEN 1 ELSE 0 END) AS on_time,
  SUM(CASE WHEN t.status = 'completed' AND t.completed_at >= t.closes_at THEN 1 ELSE 0 END) AS late,
  SUM(CASE WHEN t.status NOT IN ('completed', 'not_expected', 'cancelled') AND t.grace_closes_at <= :now
           AND t.started_at IS NOT NULL THEN 1 ELSE 0 END) AS partial,
  SUM(CASE WHEN t.status NOT IN ('completed', 'not_expected', 'cancelled') AND t.grace_closes_at <= :now
           AND t.started_at IS NULL THEN 1 ELSE 0 END) AS missed,
  SUM(CASE WHEN t.status = 'not_expected' THEN 1 ELSE 0 END) AS not_expected
FROM timepoints t JOIN patients p ON p.id = t.patient_id
WHERE p.site_id = :site
GROUP BY p.arm, t.kind, t.rule_id, CASE WHEN t.kind = 'diary' THEN NULL ELSE t.key END
"""


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--site-patients", type=int, default=2000)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20260601)
    parser.add_argument("--show-slowest", type=int, default=0, help="print the N slowest dashboard statements")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="qol-bench-")
    url = args.database_url or f"sqlite:///{Path(tmp.name) / 'bench.sqlite'}"

    from alembic import command

    from qol_app.migrations import alembic_config

    command.upgrade(alembic_config(url), "head")
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "SESSION_COOKIE_SECURE": False,
            "FROZEN_NOW": NOW,
            "STAFF_IDLE_MINUTES": 10_000,
        }
    )
    with app.app_context():
        start = time.perf_counter()
        site_id, page_patient = build(db.session, args.patients, args.site_patients, args.seed)
        print(f"bulk insert: {time.perf_counter() - start:.1f} s ({db.engine.dialect.name})")

    statements: list[str] = []
    timings: list[tuple[float, str]] = []
    engine = app.extensions["qol_db"]["engine"]
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    started: list[float] = []
    event.listen(engine, "before_cursor_execute", lambda *a: started.append(time.perf_counter()))
    event.listen(
        engine, "after_cursor_execute", lambda *a: timings.append(((time.perf_counter() - started.pop()) * 1000, a[2]))
    )

    client = app.test_client()
    client.post("/staff/login", data={"username": "bench.nurse", "password": PASSWORD})

    def page(path: str):
        statements.clear()
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        return len(statements)

    page("/staff/")  # warm caches (instrument registry, schedule, templates)
    timings.clear()
    dash_ms, dash_q = _timed(lambda: page("/staff/"), args.repeat)
    per_statement: dict[str, list[float]] = {}
    for ms, statement in timings:
        per_statement.setdefault(statement, []).append(ms)
    slowest = sorted(((statistics.median(v), k) for k, v in per_statement.items()), reverse=True)[: args.show_slowest]
    patient_ms, patient_q = _timed(lambda: page(f"/staff/patients/{page_patient}"), args.repeat)

    with app.app_context():
        session = db.session
        statements.clear()
        svc_ms, figures = _timed(lambda: compliance.compute(session, Patient.site_id == site_id, NOW), args.repeat)
        svc_q = len(statements) // args.repeat
        hand_ms, rows = _timed(
            lambda: session.execute(text(HAND_SQL), {"now": _bind(NOW, engine), "site": site_id}).all(), args.repeat
        )
        mismatches = 0
        for arm, kind, rule_id, grp, on_time, late, partial, missed, not_expected in rows:
            cell = figures.cell(compliance.Group(kind, rule_id, grp), arm)
            if (cell.on_time, cell.late, cell.partial, cell.missed, cell.not_expected) != (
                on_time,
                late,
                partial,
                missed,
                not_expected,
            ):
                mismatches += 1
        tp_count = session.execute(
            text("SELECT count(*) FROM timepoints t JOIN patients p ON p.id = t.patient_id WHERE p.site_id = :s"),
            {"s": site_id},
        ).scalar_one()

    print(f"site of {args.site_patients} patients, {tp_count} timepoints; median of {args.repeat} runs")
    print(f"dashboard:        {dash_ms:8.1f} ms  {dash_q} SQL statements")
    print(f"patient page:     {patient_ms:8.1f} ms  {patient_q} SQL statements")
    print(f"compliance svc:   {svc_ms:8.1f} ms  {svc_q} SQL statements")
    print(f"hand-written SQL: {hand_ms:8.1f} ms  1 SQL statement; {len(rows)} groups, {mismatches} mismatches")
    for ms, statement in slowest:
        print(f"  {ms:7.1f} ms  {' '.join(statement.split())[:160]}")
    tmp.cleanup()
    if mismatches:
        raise SystemExit("compliance service and hand-written SQL disagree")


def _bind(value: dt.datetime, engine):
    """Raw SQL bypasses the UTC column type: SQLite stores naive UTC text."""
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


if __name__ == "__main__":
    main()
