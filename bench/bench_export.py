"""Benchmark the long scores export (qol_long) of 100,000 forms to CSV and Parquet.

Run:  .venv/bin/python bench/bench_export.py [--forms 100000] [--pg-url URL | --skip-pg]

Bulk-inserts a trial (SQLite in a temporary file; PostgreSQL too when a server answers):
patients with a baseline and up to nine post-cycle visits, each with QLQ-C30, BN20 and EQ-5D-5L
forms; ~80 % completed (scored), the rest missed with a reason, partial, or not expected after
death. Then, each in a fresh process (so the peak resident memory, ru_maxrss, is the export's
own), it times:
- the export: database -> builders (as-of statuses, baseline, change, deterioration) -> writer;
- the reference: the same final table (read back from the Parquet file beforehand) written
  directly with pyarrow (pyarrow.parquet.write_table / pyarrow.csv.write_csv);
- a floor: only fetching the score rows through the raw DB-API cursor, no processing at all.
Targets (issue 6): export within 3x the reference, peak memory under 500 MB. The floor shows how
much of a 3x budget the database read alone already takes.

Fairness: both children import their libraries before the clock starts (the reference has pyarrow
loaded; the export loads the modules it would otherwise import lazily on its first run), and the
PostgreSQL tables are VACUUMed and ANALYZEd after the bulk insert, as autovacuum does within a
minute on a real server: without statistics the planner scans whole tables for indexed lookups,
and since PostgreSQL 13 inserts alone trigger the vacuum that sets the rows' hint bits, which the
first reader would otherwise write (about 0.1 s of the first export here).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qol_app.db import make_engine
from qol_app.migrations import alembic_config
from qol_app.models import Patient, Response, Score, Site, Timepoint
from qol_app.scoring import score_detail

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
INSTRUMENTS = {"eortc_qlq_c30": "3.0", "eortc_qlq_bn20": "1.0", "eq5d5l": "1.0"}
VISITS = 10  # baseline + 9 cycles: 30 forms per patient
REASONS = ("too_ill", "hospitalised", "forgot", "technical", "cognitive_impairment", "refused", None)


def _answer_pool(rng: random.Random, size: int = 300) -> dict[str, list[tuple[dict, dict]]]:
    """Random forms and their scores, computed once and sampled (scoring is not what is measured)."""
    from qol_app.instruments import get_registry

    registry = get_registry()
    pool: dict[str, list[tuple[dict, dict]]] = {}
    for inst in INSTRUMENTS:
        instrument = registry.get(inst)
        pool[inst] = []
        for _ in range(size):
            answers = {}
            for item in instrument.items:
                if rng.random() < 0.03:
                    answers[item.id] = None
                elif item.kind == "choice":
                    answers[item.id] = rng.choice(item.codes)
                else:
                    answers[item.id] = rng.randint(int(item.min), int(item.max))
            detail = score_detail(inst, answers)
            pool[inst].append((answers, {k: (v, detail.n_answered.get(k)) for k, v in detail.scores.items()}))
    return pool


def populate(url: str, n_forms: int) -> dict[str, int]:
    from alembic import command

    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(url, connection=conn), "head")
    rng = random.Random(6)
    pool = _answer_pool(rng)
    n_patients = max(1, n_forms // (VISITS * len(INSTRUMENTS)))
    counts = {"patients": n_patients, "forms": 0, "responses": 0, "scores": 0}
    tp_id = resp_id = 0
    with Session(engine) as s:
        s.execute(
            insert(Site),
            [
                {
                    "id": i,
                    "code": f"B{i:02d}",
                    "name": f"bench site {i}",
                    "timezone": "Asia/Shanghai",
                    "default_language": "zh_Hans",
                    "emergency_phone": "120",
                    "created_at": NOW,
                }
                for i in (1, 2)
            ],
        )
        tps, resps, scores = [], [], []

        def flush() -> None:
            for model, rows in ((Timepoint, tps), (Response, resps), (Score, scores)):
                if rows:
                    s.execute(insert(model), rows)
                    rows.clear()

        for p in range(n_patients):
            rand = (NOW - dt.timedelta(days=400 - p % 200)).date()
            died = p % 4 == 0
            s.execute(
                insert(Patient),
                [
                    {
                        "id": p + 1,
                        "study_id": f"B{1 + p % 2:02d}-{p:05d}",
                        "site_id": 1 + p % 2,
                        "arm": "AB"[p % 2],
                        "randomization_date": rand,
                        "language": "zh_Hans",
                        "status": "died" if died else "active",
                        "status_date": rand + dt.timedelta(days=120) if died else None,
                        "link_token_hash": uuid.uuid4().hex,
                        "pin_failures": 0,
                        "created_at": NOW - dt.timedelta(days=500),
                    }
                ],
            )
            for v in range(VISITS):
                if counts["forms"] >= n_forms:
                    break
                tp_id += 1
                target = rand + dt.timedelta(days=21 * v)
                opens = dt.datetime.combine(target - dt.timedelta(days=3), dt.time(), tzinfo=dt.UTC)
                not_expected = died and target > rand + dt.timedelta(days=120)
                roll = rng.random()
                state = (
                    "not_expected"
                    if not_expected
                    else "completed"
                    if roll < 0.82
                    else "partial"
                    if roll < 0.85
                    else "missed"
                )
                tps.append(
                    {
                        "id": tp_id,
                        "patient_id": p + 1,
                        "key": "baseline" if v == 0 else f"sys-c{v}",
                        "rule_id": "baseline" if v == 0 else "after_systemic_cycle",
                        "kind": "questionnaire",
                        "instruments": list(INSTRUMENTS),
                        "anchor_kind": "randomization" if v == 0 else "systemic_cycle",
                        "anchor_number": v or None,
                        "anchor_date": target - dt.timedelta(days=21 if v else 0),
                        "target_date": target,
                        "window_start": target - dt.timedelta(days=3),
                        "window_end": target + dt.timedelta(days=3),
                        "grace_end": target + dt.timedelta(days=6),
                        "opens_at": opens,
                        "closes_at": opens + dt.timedelta(days=7),
                        "grace_closes_at": opens + dt.timedelta(days=10),
                        "status": state,
                        "status_changed_at": opens + dt.timedelta(days=10),
                        "not_expected_reason": "died" if not_expected else None,
                        "missed_reason": rng.choice(REASONS) if state in ("missed", "partial") else None,
                        "created_at": opens - dt.timedelta(days=30),
                    }
                )
                for inst, version in INSTRUMENTS.items():
                    counts["forms"] += 1
                    if state not in ("completed", "partial"):
                        continue
                    resp_id += 1
                    submitted = state == "completed"
                    at = opens + dt.timedelta(hours=rng.randint(1, 200))
                    resps.append(
                        {
                            "id": resp_id,
                            "timepoint_id": tp_id,
                            "patient_id": p + 1,
                            "instrument_id": inst,
                            "instrument_version": version,
                            "revision": 0,
                            "language": "zh_Hans",
                            "wording_version": "own",
                            "respondent": rng.choice(("self", "self", "self_assisted", "proxy")),
                            "mode": "web",
                            "status": "submitted" if submitted else "in_progress",
                            "started_at": at,
                            "submitted_at": at if submitted else None,
                        }
                    )
                    if submitted:
                        _answers, result = rng.choice(pool[inst])
                        scores.extend(
                            {
                                "response_id": resp_id,
                                "scale": k,
                                "value": v_,
                                "n_items": n,
                                "scoring_version": "1.0.0",
                                "computed_at": at,
                            }
                            for k, (v_, n) in result.items()
                        )
            if len(scores) > 50_000:
                flush()
        flush()
        s.commit()
        counts["responses"] = resp_id
        counts["scores"] = s.scalar(text("SELECT count(*) FROM scores"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return counts


# ---------------------------------------------------------------- measured in child processes


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_export(url: str, fmt: str, out: str) -> None:
    import pandas  # noqa: F401 - pyarrow imports it on first conversion from Python values
    import pyarrow.parquet  # noqa: F401

    import qol_app.export.builders.columnar  # noqa: F401 - imported lazily by the first export
    from qol_app.export import write_dataset
    from qol_app.export.builders import ExportFilters, ExportSpec, scores_long
    from qol_app.export.run import bulk_gc
    from qol_app.instruments import get_registry

    registry = get_registry()
    engine = make_engine(url)
    start = time.perf_counter()
    with Session(engine) as session, bulk_gc():  # as run_export does
        spec = ExportSpec(filters=ExportFilters(), as_of=NOW, registry=registry)
        path = write_dataset(fmt, scores_long(session, spec), Path(out), as_of=NOW)
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "peak_mb": _peak_mb(), "bytes": path.stat().st_size}))


def child_floor(url: str) -> None:
    """Only reading the score rows (raw DB-API fetch, no processing): the least any export must do."""
    engine = make_engine(url)
    start = time.perf_counter()
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("SELECT response_id, scale, value, n_items, scoring_version FROM scores")
        rows = 0
        while batch := cursor.fetchmany(50_000):
            rows += len(batch)
    print(json.dumps({"wall": time.perf_counter() - start, "peak_mb": _peak_mb(), "rows": rows}))


def child_reference(parquet: str, fmt: str, out: str) -> None:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    start = time.perf_counter()
    target = Path(out) / f"reference.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, target, compression="snappy", row_group_size=50_000)
    else:
        pcsv.write_csv(table, target)
    wall = time.perf_counter() - start
    print(json.dumps({"wall": wall, "peak_mb": _peak_mb(), "rows": table.num_rows}))


def _child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(label: str, url: str, n_forms: int, out: Path) -> None:
    t0 = time.perf_counter()
    counts = populate(url, n_forms)
    print(
        f"[{label}] bulk-inserted {counts['forms']:,} forms ({counts['patients']:,} patients, "
        f"{counts['responses']:,} responses, {counts['scores']:,} scores) in {time.perf_counter() - t0:.0f}s"
    )
    floor = _child("--child-floor", url)
    print(f"[{label}] floor: raw fetch of the {floor['rows']:,} score rows alone takes {floor['wall']:.2f}s")
    for fmt in ("parquet", "csv"):  # parquet first: the reference reads the table from it
        folder = out / label / fmt
        folder.mkdir(parents=True)
        mine = _child("--child-export", url, fmt, str(folder))
        ref = _child("--child-reference", str(out / label / "parquet" / "qol_long.parquet"), fmt, str(folder))
        print(
            f"[{label}] qol_long.{fmt}: {ref['rows']:,} rows, {mine['bytes'] / 2**20:.0f} MiB | export "
            f"{mine['wall']:.2f}s, peak {mine['peak_mb']:.0f} MB | pyarrow direct {ref['wall']:.2f}s, "
            f"peak {ref['peak_mb']:.0f} MB | ratio {mine['wall'] / ref['wall']:.1f}x"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-export":
        return child_export(*sys.argv[2:5])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-floor":
        return child_floor(sys.argv[2])
    if len(sys.argv) > 1 and sys.argv[1] == "--child-reference":
        return child_reference(*sys.argv[2:5])
    parser = argparse.ArgumentParser()
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run("sqlite", f"sqlite:///{out / 'bench.sqlite'}", args.forms, out)
        if args.skip_pg:
            return None
        name = f"qol_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
            print(f"[postgresql] skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            return None
        try:
            run(
                "postgresql",
                make_url(args.pg_url).set(database=name).render_as_string(hide_password=False),
                args.forms,
                out,
            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return None


if __name__ == "__main__":
    main()
