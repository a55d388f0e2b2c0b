"""Benchmark the export pipeline: the demo trial and 100,000 forms in all 8 formats; the long file.

Run:  .venv/bin/python bench/bench_export.py [--forms 100000] [--repeat 3] [--pg-url URL | --skip-pg]

1. The demo trial (``qol demo`` into a temporary SQLite file): ``run_export`` with all 8 formats
   (csv, xlsx, parquet, xpt, dta, sav, fhir, sdtm), the median of ``--repeat`` runs, each in a
   fresh process. Target (issue 15): at most 3 s.
2. 100,000 forms bulk-inserted (SQLite; PostgreSQL too when a server answers): patients with a
   baseline and up to nine post-cycle visits, each with QLQ-C30, BN20 and EQ-5D-5L forms; ~82 %
   completed (scored, with their answers), the rest missed with a reason, partial, or not
   expected after death. ``run_export`` with all 8 formats in a fresh process: wall time and peak
   resident memory (ru_maxrss). Targets: at most 60 s, under 500 MB.
3. The long file alone, in three timed parts: reading the trial and building qol_long; the app
   writing that dataset as Parquet (``write_dataset``: field labels, 50,000-row row groups);
   pyarrow writing the same table (``pyarrow.parquet.write_table`` of the table read back from
   the app's file, same compression and row groups). Target (issue 15: "long file Parquet at most
   5x pyarrow writing the same table"): the app's write against pyarrow's, each best of
   ``--repeat``; read + build + write against pyarrow's write is shown beside it.
Each figure also shows the process CPU time: on a shared machine wall time moves with the load.

The export runs in each child as installed for production, without pandas: pandas is only a test
dependency (an independent reader in the tests), yet pyarrow imports it, when it can, on its first
conversion of a Python list (about 33 MB more resident memory). ``--with-pandas`` lets it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qol_app.db import make_engine
from qol_app.migrations import alembic_config
from qol_app.models import Answer, Patient, Response, Score, Site, Timepoint
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
        tps, resps, scores, answers = [], [], [], []

        def flush() -> None:
            for model, rows in ((Timepoint, tps), (Response, resps), (Score, scores), (Answer, answers)):
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
                    given, result = rng.choice(pool[inst])
                    answers.extend(
                        {
                            "response_id": resp_id,
                            "item_id": item,
                            "value": None if value is None else float(value),
                            "skipped": value is None,
                            "answered_at": at,
                        }
                        for item, value in given.items()
                        if submitted or item < "q2"
                    )
                    if submitted:
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
            if len(answers) > 50_000:
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
    """This process's peak resident memory: VmHWM on Linux. Not ``ru_maxrss``: a child started by
    ``subprocess`` (vfork, then exec) inherits the parent's high-water mark there, so the children
    would report the bench's own peak (the bulk insert's) whenever it is the larger."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


ALL_FORMATS = ("csv", "xlsx", "parquet", "xpt", "dta", "sav", "fhir", "sdtm")


def _run_export(url: str, out: str, formats: tuple[str, ...]) -> tuple[float, float]:
    """One export as the job runner does it; returns (wall, cpu) seconds."""
    from qol_app.export.run import ExportRequest
    from qol_app.export.source import ExportFilters
    from qol_app.instruments import get_registry
    from qol_app.services import audit
    from qol_app.services.audit import Actor
    from qol_app.services.exports import run_export

    registry = get_registry()
    engine = make_engine(url)
    request = ExportRequest(formats=formats, filters=ExportFilters(), as_of=NOW)
    start, cpu = time.perf_counter(), time.process_time()
    with Session(engine, info=audit.session_info("bench-audit-key")) as session:
        run_export(session, request, Path(out), actor=Actor.system("bench"), now=NOW, registry=registry)
        session.rollback()
    return time.perf_counter() - start, time.process_time() - cpu


def child_export(url: str, out: str) -> None:
    import pyarrow.parquet  # noqa: F401 - libraries loaded before the clock starts, as in a running scheduler

    wall, cpu = _run_export(url, out, ALL_FORMATS)
    size = sum(p.stat().st_size for p in Path(out).glob("*.zip"))
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": _peak_mb(), "bytes": size}))


def child_long(url: str, out: str, repeat: str = "3") -> None:
    """Read + build qol_long, the app writing it as Parquet, then pyarrow writing the same table.

    Each write is timed alone (best of ``repeat``, CPU and wall): the target compares writes."""
    import pyarrow.parquet as pq

    from qol_app.export import build
    from qol_app.export.build import ExportSpec
    from qol_app.export.memory import bulk_gc
    from qol_app.export.source import ExportFilters, Source
    from qol_app.export.writers import write_dataset
    from qol_app.instruments import get_registry

    engine = make_engine(url)
    spec = ExportSpec(filters=ExportFilters(), as_of=NOW, registry=get_registry())
    start, cpu = time.perf_counter(), time.process_time()
    with Session(engine) as session, bulk_gc():  # as write_export reads and builds
        trial = build.load(Source(session, spec.filters, spec.instruments), spec)
        dataset = build.qol_long(trial)
    built, built_cpu = time.perf_counter() - start, time.process_time() - cpu

    def best(write: Callable[[], object]) -> tuple[float, float]:
        runs = []
        for _ in range(max(1, int(repeat))):
            start, cpu = time.perf_counter(), time.process_time()
            write()
            runs.append((time.perf_counter() - start, time.process_time() - cpu))
        return min(r[0] for r in runs), min(r[1] for r in runs)

    path = Path(out) / "qol_long.parquet"
    app, app_cpu = best(lambda: write_dataset("parquet", dataset, Path(out), as_of=NOW))
    table = pq.read_table(path)
    reference = Path(out) / "reference.parquet"
    ref, ref_cpu = best(lambda: pq.write_table(table, reference, compression="snappy", row_group_size=50_000))
    print(
        json.dumps(
            {"build": built, "build_cpu": built_cpu, "wall": app, "cpu": app_cpu, "ref": ref, "ref_cpu": ref_cpu}
            | {"rows": table.num_rows, "bytes": path.stat().st_size, "ref_bytes": reference.stat().st_size}
        )
    )


def child_demo(url: str, out: str) -> None:
    wall, cpu = _run_export(url, out, ALL_FORMATS)
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": _peak_mb()}))


class _NoPandas:
    """A meta-path finder that makes pandas not importable, as in a production install."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (bench: not in a production install)")


WITH_PANDAS = "QOL_BENCH_WITH_PANDAS"


def _child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def demo(out: Path, repeat: int) -> None:
    url = f"sqlite:///{out / 'demo.sqlite'}"
    env_url = {"QOL_DATABASE_URL": url}
    subprocess.run(
        [str(Path(sys.executable).parent / "qol"), "db", "upgrade"],
        env=os.environ | env_url,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(Path(sys.executable).parent / "qol"), "demo"], env=os.environ | env_url, check=True, capture_output=True
    )
    runs = []
    for n in range(repeat):
        folder = out / f"demo-{n}"
        folder.mkdir()
        runs.append(_child("--child-demo", url, str(folder)))
    runs.sort(key=lambda r: r["wall"])
    mid = runs[len(runs) // 2]
    walls = ", ".join(f"{r['wall']:.2f}" for r in runs)
    print(
        f"[demo] all 8 formats: median {mid['wall']:.2f}s wall, {mid['cpu']:.2f}s CPU "
        f"(runs {walls}), peak {mid['peak_mb']:.0f} MB | {_load()}"
    )


def run(label: str, url: str, n_forms: int, out: Path) -> None:
    t0 = time.perf_counter()
    counts = populate(url, n_forms)
    print(
        f"[{label}] bulk-inserted {counts['forms']:,} forms ({counts['patients']:,} patients, "
        f"{counts['responses']:,} responses, {counts['scores']:,} scores) in {time.perf_counter() - t0:.0f}s"
    )
    folder = out / label / "all"
    folder.mkdir(parents=True)
    mine = _child("--child-export", url, str(folder))
    print(
        f"[{label}] all 8 formats: {mine['wall']:.1f}s wall, {mine['cpu']:.1f}s CPU, peak {mine['peak_mb']:.0f} MB, "
        f"zip {mine['bytes'] / 2**20:.0f} MiB | {_load()}"
    )
    folder = out / label / "long"
    folder.mkdir(parents=True)
    long = _child("--child-long", url, str(folder))
    print(
        f"[{label}] qol_long.parquet, {long['rows']:,} rows: app write {long['wall']:.2f}s ({long['cpu']:.2f}s CPU)"
        f" | pyarrow write_table {long['ref']:.2f}s ({long['ref_cpu']:.2f}s CPU) | ratio {long['wall'] / long['ref']:.1f}x"
        f" ({long['cpu'] / long['ref_cpu']:.1f}x CPU) | read + build {long['build']:.2f}s ({long['build_cpu']:.2f}s CPU),"
        f" read + build + write {(long['build'] + long['wall']) / long['ref']:.1f}x | {_load()}"
    )


def main() -> None:
    children = {"--child-export": child_export, "--child-long": child_long, "--child-demo": child_demo}
    if len(sys.argv) > 1 and sys.argv[1] in children:
        if not os.environ.get(WITH_PANDAS):
            sys.meta_path.insert(0, _NoPandas())  # type: ignore[arg-type]
        return children[sys.argv[1]](*sys.argv[2:4])
    parser = argparse.ArgumentParser()
    parser.add_argument("--forms", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--with-pandas", action="store_true", help="let pyarrow import pandas in the export (test venv)"
    )
    args = parser.parse_args()
    if args.with_pandas:
        os.environ[WITH_PANDAS] = "1"
    print("[export] pandas importable" if args.with_pandas else "[export] pandas not importable, as in production")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if not args.skip_demo:
            demo(out, args.repeat)
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
