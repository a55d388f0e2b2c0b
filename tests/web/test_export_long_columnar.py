"""qol_long: the column-wise builder (CSV, Parquet) writes the same bytes as the row builder, on both
databases, over a random trial with the awkward cases: corrections, unfinished corrections, late and
cancelled records, dated diary keys, patient time zones, unscored scales and scales an instrument
does not list, filters, ISO dates and one patient per chunk."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path

import pytest
from sqlalchemy import insert

from qol_app.export import write_dataset
from qol_app.export.builders import ExportFilters, ExportSpec, scores_long
from qol_app.export.builders.tables import counted, counted_batches
from qol_app.instruments import get_registry
from qol_app.models import Patient, Response, Score, Site, Timepoint
from qol_app.scoring import score_detail

UTC = dt.UTC
AS_OF = dt.datetime(2026, 5, 1, 4, tzinfo=UTC)
C30, BN20, EQ5D, DIARY = "eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l", "symptom_diary"
REASONS = ("too_ill", "hospitalised", "other", "", None)


def _scores(rng: random.Random, instrument_id: str) -> dict[str, tuple[float | None, int | None]]:
    instrument = get_registry().get(instrument_id)
    answers = {}
    for item in instrument.items:
        if rng.random() < 0.1:
            answers[item.id] = None
        elif item.kind == "choice":
            answers[item.id] = rng.choice(item.codes)
        else:
            answers[item.id] = rng.randint(int(item.min), int(item.max))
    detail = score_detail(instrument_id, answers)
    out = {scale: (value, detail.n_answered.get(scale)) for scale, value in detail.scores.items()}
    if rng.random() < 0.05:
        out["ZZOLD"] = (rng.choice((12.5, None)), None)  # a scale from another version of the instrument
    return out


def _moment(rng: random.Random, around: dt.datetime, days: int) -> dt.datetime:
    return around + dt.timedelta(hours=rng.randint(-24 * days, 24 * days), microseconds=rng.choice((0, 250_000)))


def populate(session, seed: int = 7, n_patients: int = 14) -> None:
    """A small random trial, bulk-inserted (like bench/bench_export.py) in the test's transaction."""
    rng = random.Random(seed)
    session.execute(
        insert(Site),
        [
            {
                "id": 1,
                "code": "T1",
                "name": "t1",
                "timezone": "Asia/Shanghai",
                "default_language": "zh_Hans",
                "emergency_phone": "120",
                "created_at": AS_OF,
            },
            {
                "id": 2,
                "code": "T2",
                "name": "t2",
                "timezone": "America/New_York",
                "default_language": "en",
                "emergency_phone": "911",
                "created_at": AS_OF,
            },
        ],
    )
    tps, responses, scores = [], [], []
    for p in range(1, n_patients + 1):
        rand = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 60))
        session.execute(
            insert(Patient),
            [
                {
                    "id": p,
                    "study_id": f"T{1 + p % 2}-{rng.randint(0, 999):03d}{p:02d}",
                    "site_id": 1 + p % 2,
                    "arm": "AB"[p % 2],
                    "randomization_date": rand,
                    "language": rng.choice(("zh_Hans", "en")),
                    "timezone": rng.choice((None, "", "Europe/Berlin")),
                    "status": "active",
                    "link_token_hash": f"hash{p}",
                    "pin_failures": 0,
                    "created_at": AS_OF + dt.timedelta(days=1) if p == n_patients else AS_OF - dt.timedelta(days=200),
                }
            ],
        )
        keys = [
            "baseline",
            *(f"sys-c{c}" for c in range(1, 5)),
            *(f"diary-{rand + dt.timedelta(days=d):%Y-%m-%d}" for d in (3, 9)),
        ]
        for n, key in enumerate(keys):
            diary = key.startswith("diary")
            target = rand + dt.timedelta(days=4 if diary else 21 * n - rng.randint(0, 3))
            opens = dt.datetime.combine(target - dt.timedelta(days=3), dt.time(16), tzinfo=UTC)
            instruments = [DIARY] if diary else rng.choice(([C30, BN20, EQ5D], [EQ5D, C30], [C30]))
            status = rng.choice(("scheduled", "completed", "missed", "cancelled", "not_expected"))
            changed = _moment(rng, AS_OF, 40) if status in ("cancelled", "not_expected") else None
            tp_id = p * 100 + n
            tps.append(
                {
                    "id": tp_id,
                    "patient_id": p,
                    "key": key,
                    "rule_id": "diary" if diary else key.split("-")[0],
                    "kind": "diary" if diary else "questionnaire",
                    "instruments": instruments,
                    "anchor_kind": "randomization" if n == 0 or diary else "systemic_cycle",
                    "anchor_number": None if n == 0 or diary else n,
                    "anchor_date": target - dt.timedelta(days=21),
                    "target_date": target,
                    "window_start": target - dt.timedelta(days=3),
                    "window_end": target + dt.timedelta(days=3),
                    "grace_end": target + dt.timedelta(days=6),
                    "opens_at": opens,
                    "closes_at": opens + dt.timedelta(days=7),
                    "grace_closes_at": opens + dt.timedelta(days=10),
                    "status": status,
                    "status_changed_at": changed,
                    "not_expected_reason": rng.choice(("died", "lost", "")) if status == "not_expected" else None,
                    "missed_reason": rng.choice(REASONS),
                    "created_at": AS_OF + dt.timedelta(days=2)
                    if rng.random() < 0.05
                    else opens - dt.timedelta(days=30),
                }
            )
            for inst in instruments:
                for revision in range(rng.choice((0, 1, 1, 1, 2, 3))):
                    started = opens + dt.timedelta(hours=rng.randint(1, 300))
                    submitted = _moment(rng, started + dt.timedelta(days=1), 2) if rng.random() < 0.8 else None
                    rid = len(responses) + 1
                    responses.append(
                        {
                            "id": rid,
                            "timepoint_id": tp_id,
                            "patient_id": p,
                            "instrument_id": inst,
                            "instrument_version": rng.choice(("1.0", "3.0")),
                            "revision": revision,
                            "language": rng.choice(("zh_Hans", "en")),
                            "wording_version": "own",
                            "respondent": rng.choice(("self", "self_assisted", "proxy")),
                            "mode": rng.choice(("web", "interview")),
                            "status": "submitted" if submitted else "in_progress",
                            "started_at": started,
                            "submitted_at": submitted,
                        }
                    )
                    if submitted:
                        scores.extend(
                            {
                                "response_id": rid,
                                "scale": scale,
                                "value": value,
                                "n_items": n_items,
                                "scoring_version": rng.choice(("1.0.0", "1.1.0")),
                                "computed_at": submitted,
                            }
                            for scale, (value, n_items) in _scores(rng, inst).items()
                        )
    for model, rows in ((Timepoint, tps), (Response, responses), (Score, scores)):
        session.execute(insert(model), rows)
    session.flush()


SPECS = {
    "default": {},
    "iso-dates": {"iso_dates": True},
    "date-range": {"filters": ExportFilters(date_from=dt.date(2026, 2, 1), date_to=dt.date(2026, 3, 31))},
    "instruments": {"filters": ExportFilters(instruments=(EQ5D, DIARY))},
    "site-arm": {"filters": ExportFilters(sites=("T2",), arms=("B",))},
    "earlier": {"as_of": dt.datetime(2026, 3, 1, tzinfo=UTC), "threshold": 5.0},
    "tiny-chunks": {"chunk_patients": 1, "baseline_key": "sys-c1"},
}


def assert_both_paths_write_the_same_bytes(session, spec: ExportSpec, tmp_path: Path) -> None:
    """The long file's CSV and Parquet by the row builder (in ``rows/``) and the column-wise one
    (in ``columns/``) are the same bytes."""
    for folder in ("rows", "columns"):
        (tmp_path / folder).mkdir()
    for fmt in ("csv", "parquet"):
        by_rows = write_dataset(
            fmt, dataclasses.replace(scores_long(session, spec), batches=None), tmp_path / "rows", as_of=AS_OF
        )
        by_columns = write_dataset(fmt, scores_long(session, spec), tmp_path / "columns", as_of=AS_OF)
        assert by_columns.read_bytes() == by_rows.read_bytes(), fmt


@pytest.mark.parametrize("name", SPECS)
def test_column_wise_long_file_is_the_row_builders_byte_for_byte(session, tmp_path: Path, name: str) -> None:
    populate(session)
    spec = ExportSpec(**{"filters": ExportFilters(), "as_of": AS_OF} | SPECS[name])
    assert_both_paths_write_the_same_bytes(session, spec, tmp_path)
    lines = (tmp_path / "rows" / "qol_long.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 20  # the case is not vacuous


def test_both_paths_cover_the_awkward_cases(session) -> None:
    """The random trial really holds what the comparison is meant to exercise."""
    populate(session)
    rows = list(scores_long(session, ExportSpec(filters=ExportFilters(), as_of=AS_OF)).rows)
    statuses = {row[11] for row in rows}
    assert statuses == {"completed", "partial", "missed", "not_expected", "pending"}
    assert any(row[6] == "ZZOLD" for row in rows)
    assert any(row[3].startswith("diary-d") for row in rows)
    assert any(row[24] and row[24] > 0 for row in rows)  # a correction is the current revision
    assert any(row[27] is not None for row in rows) and any(row[28] is True for row in rows)


@pytest.mark.parametrize("sizes", [[3, 0, 49_998, 2], [50_000, 50_000], [120_001], []])
def test_batches_report_progress_as_rows_do(sizes: list[int]) -> None:
    @dataclasses.dataclass
    class Batch:
        num_rows: int

    by_rows: list[tuple[int, bool]] = []
    by_batches: list[tuple[int, bool]] = []
    list(counted(range(sum(sizes)), 50_000, lambda n, done: by_rows.append((n, done))))
    list(counted_batches([Batch(n) for n in sizes], 50_000, lambda n, done: by_batches.append((n, done))))
    assert by_batches == by_rows
