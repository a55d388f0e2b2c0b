"""Benchmark `qol rescore` over 100,000 stored forms (QLQ-C30 + BN20) on SQLite and PostgreSQL.

Run:  .venv/bin/python bench/bench_rescore.py [--forms 100000] [--pg-url URL]
Prints the in-memory score() rate beside the rescore rate (target: rescore >= 25 % of it),
for an unchanged database (read + compare) and after all scores were deleted (full rewrite).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, delete, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qol_app.db import make_engine  # noqa: E402
from qol_app.migrations import alembic_config  # noqa: E402
from qol_app.models import Answer, Patient, Response, Score, Site, Timepoint  # noqa: E402
from qol_app.scoring import score  # noqa: E402
from qol_app.services import audit  # noqa: E402
from qol_app.services.audit import Actor  # noqa: E402
from qol_app.services.rescoring import rescore_all  # noqa: E402

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
FORMS = {
    "eortc_qlq_c30": ("3.0", [f"q{i}" for i in range(1, 31)]),
    "eortc_qlq_bn20": ("1.0", [f"q{i}" for i in range(1, 21)]),
}


def random_answers(rng: random.Random, instrument: str) -> dict[str, int | None]:
    out = {}
    for item in FORMS[instrument][1]:
        top = 7 if instrument == "eortc_qlq_c30" and item in ("q29", "q30") else 4
        out[item] = None if rng.random() < 0.03 else rng.randint(1, top)
    return out


def in_memory_rate(n: int = 20000) -> float:
    rng = random.Random(1)
    forms = [(inst, random_answers(rng, inst)) for inst in FORMS for _ in range(n // 2)]
    start = time.perf_counter()
    for inst, answers in forms:
        score(inst, answers)
    return len(forms) / (time.perf_counter() - start)


def populate(engine, n_forms: int) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(str(engine.url), connection=conn), "head")
    rng = random.Random(7)
    per_patient = 50
    n_tp = n_forms // 2
    with Session(engine) as s:
        s.execute(
            insert(Site),
            [
                dict(
                    id=1,
                    code="B01",
                    name="bench",
                    timezone="Asia/Shanghai",
                    default_language="zh_Hans",
                    emergency_phone="120",
                    created_at=NOW,
                )
            ],
        )
        n_pat = n_tp // per_patient
        s.execute(
            insert(Patient),
            [
                dict(
                    id=i + 1,
                    study_id=f"B01-{i:05d}",
                    site_id=1,
                    arm="AB"[i % 2],
                    randomization_date=NOW.date(),
                    language="zh_Hans",
                    status="active",
                    link_token_hash=uuid.uuid4().hex,
                    pin_failures=0,
                    created_at=NOW,
                )
                for i in range(n_pat)
            ],
        )
        day = NOW.date()
        s.execute(
            insert(Timepoint),
            [
                dict(
                    id=t + 1,
                    patient_id=t // per_patient + 1,
                    key=f"k{t}",
                    rule_id="r",
                    kind="questionnaire",
                    instruments=list(FORMS),
                    anchor_kind="randomization",
                    anchor_date=day,
                    target_date=day,
                    window_start=day,
                    window_end=day,
                    grace_end=day,
                    opens_at=NOW,
                    closes_at=NOW,
                    grace_closes_at=NOW,
                    status="completed",
                    created_at=NOW,
                )
                for t in range(n_tp)
            ],
        )
        rid = 0
        chunk_resp, chunk_ans, chunk_score = [], [], []
        for t in range(n_tp):
            for inst, (version, _items) in FORMS.items():
                rid += 1
                answers = random_answers(rng, inst)
                chunk_resp.append(
                    dict(
                        id=rid,
                        timepoint_id=t + 1,
                        patient_id=t // per_patient + 1,
                        instrument_id=inst,
                        instrument_version=version,
                        revision=0,
                        language="zh_Hans",
                        wording_version="own",
                        respondent="self",
                        mode="web",
                        status="submitted",
                        started_at=NOW,
                        submitted_at=NOW,
                    )
                )
                chunk_ans.extend(
                    dict(response_id=rid, item_id=k, value=v, skipped=v is None, answered_at=NOW)
                    for k, v in answers.items()
                )
                chunk_score.extend(
                    dict(response_id=rid, scale=k, value=v, n_items=None, scoring_version="1.0.0", computed_at=NOW)
                    for k, v in score(inst, answers).items()
                )
            if len(chunk_resp) >= 5000 or t == n_tp - 1:
                s.execute(insert(Response), chunk_resp)
                s.execute(insert(Answer), chunk_ans)
                s.execute(insert(Score), chunk_score)
                chunk_resp, chunk_ans, chunk_score = [], [], []
        s.commit()


def timed_rescore(engine) -> tuple[float, object]:
    from qol_app.instruments import get_registry

    get_registry()
    with Session(engine, info=audit.session_info("bench-audit-key")) as s:
        start = time.perf_counter()
        result = rescore_all(s, Actor.system("bench"), NOW)
        s.commit()
        return time.perf_counter() - start, result


def run(label: str, url: str, n_forms: int, baseline: float) -> None:
    engine = make_engine(url)
    t0 = time.perf_counter()
    populate(engine, n_forms)
    print(f"[{label}] populated {n_forms} forms in {time.perf_counter() - t0:.1f}s")
    # First pass fills n_items (the bulk load left it empty), so it rewrites; then the real runs.
    timed_rescore(engine)
    secs, result = timed_rescore(engine)
    print(
        f"[{label}] rescore, nothing changed: {secs:.2f}s = {result.forms / secs:,.0f} forms/s "
        f"({100 * result.forms / secs / baseline:.0f} % of in-memory); changed={result.changed_forms}"
    )
    with engine.begin() as conn:
        conn.execute(delete(Score))
    secs, result = timed_rescore(engine)
    print(
        f"[{label}] rescore, all scores rewritten: {secs:.2f}s = {result.forms / secs:,.0f} forms/s "
        f"({100 * result.forms / secs / baseline:.0f} % of in-memory); changed={result.changed_forms}"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    baseline = in_memory_rate()
    print(f"in-memory score(): {baseline:,.0f} forms/s (C30 + BN20 mix)")
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", f"sqlite:///{Path(tmp) / 'bench.sqlite'}", args.forms, baseline)
    if args.skip_pg:
        return
    name = f"qol_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        run(
            "postgresql",
            make_url(args.pg_url).set(database=name).render_as_string(hide_password=False),
            args.forms,
            baseline,
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
