"""qol_long: the column-wise reader (``source._ArrowReader``) gives the driver's values exactly, on both
databases and through each of its paths: floats bit for bit (SQLite's and PostgreSQL's text
conversions are the risk) and with their own rows (on SQLite they come apart from the JSON of the
other columns), empty text versus NULL, text with commas, quotes, newlines and Chinese, instants to
the microsecond; and the long file stays the row builder's byte for byte when such text reaches it.
Also the Parquet row groups written from pieces (``writers.arrow.row_groups``) are the contiguous
ones' bytes."""

from __future__ import annotations

import datetime as dt
import math
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Float, Integer, MetaData, Table, create_engine, insert, select, update
from sqlalchemy.orm import Session

from qol_app.export.builders import ExportFilters, ExportSpec
from qol_app.export.builders.columnar import RESPONSE_TYPES, SCORE_TYPES, TIMEPOINT_TYPES, _frame
from qol_app.export.builders.source import _ArrowReader
from qol_app.export.writers.arrow import row_groups
from qol_app.models import Response, Score, Timepoint
from tests.web.test_export_long_columnar import AS_OF, assert_both_paths_write_the_same_bytes, populate

AWKWARD_TEXT = ["", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "漏填,原因", ",", '"', " lead", "NULL", "\\N", "x\\y"]
FLOATS = [
    100 / 3,
    1 / 3 * 100,
    33.33333333333333,
    66.66666666666667,
    0.1 + 0.2,
    8.774233438561719,
    72.56116245255009,
    2 / 3 * 100,
    1e-310,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -2.5,
    1e22,
    123456789.12345679,
    *(
        struct.unpack("<d", struct.pack("<Q", bits))[0]
        for bits in (0x3FD5555555555555, 0x4040AAAAAAAAAAAB, 0x7FEFFFFFFFFFFFFF, 0x0000000000000001)
    ),
]


def _driver_rows(session, stmt) -> list[tuple]:
    return [tuple(row) for row in session.connection().execute(stmt).all()]


def _bits(value: float | None) -> int | None:
    return None if value is None else struct.unpack("<Q", struct.pack("<d", value))[0]


@pytest.mark.parametrize("order", ["plain", "reversed"])
@pytest.mark.parametrize("path", ["default", "driver"])
def test_scores_come_back_exactly(session, path: str, order: str) -> None:
    """``reversed``: the query's own order is not the key's, which the floats' rows follow."""
    populate(session, n_patients=2)
    response_id = session.execute(select(Response.id).where(Response.status == "submitted")).scalars().first()
    awkward = [
        {
            "response_id": response_id,
            "scale": f"Z{n:02d}{text}"[:16],
            "value": value,
            "n_items": n or None,
            "scoring_version": text[:16],
            "computed_at": AS_OF,
        }
        for n, (text, value) in enumerate(zip(AWKWARD_TEXT * 2, FLOATS + [None] * 10))
    ]
    session.execute(Score.__table__.insert(), awkward)
    stmt = select(Score.response_id, Score.scale, Score.value, Score.n_items, Score.scoring_version)
    if order == "reversed":
        stmt = stmt.order_by(Score.response_id.desc(), Score.scale.desc())
    ids = session.execute(select(Response.id)).scalars().all()
    reader = _ArrowReader(session)
    postgres = session.get_bind().dialect.name == "postgresql"
    assert (reader.mode, reader.iso_times) == (("csv", True) if postgres else ("json", False))  # the fast paths
    reader.mode = "driver" if path == "driver" else reader.mode
    columns = _frame(
        reader.columns_in(stmt, Score.response_id, ids, batch=7, key=(Score.response_id, Score.id)), SCORE_TYPES
    )
    got = sorted(zip(*(columns[name].to_pylist() for name in SCORE_TYPES)), key=lambda r: (r[0], r[1]))
    want = sorted(_driver_rows(session, stmt), key=lambda r: (r[0], r[1]))
    assert [(r[0], r[1], _bits(r[2]), r[3], r[4]) for r in got] == [(r[0], r[1], _bits(r[2]), r[3], r[4]) for r in want]
    assert {r[4] for r in got} >= {text[:16] for text in AWKWARD_TEXT}  # "" stays "", not NULL
    assert any(r[2] is None for r in got) and any(r[2] is not None and math.isclose(r[2], 100 / 3) for r in got)


_SQLITE = create_engine("sqlite://")
_FLOATS = Table(
    "floats", MetaData(), Column("id", Integer, primary_key=True), Column("rid", Integer), Column("value", Float)
)
_FLOATS.create(_SQLITE)
IN_RANGE = st.floats(min_value=-127.99999999999999, max_value=127.99999999999999).filter(
    lambda v: v == 0 or abs(v) >= 1e-12
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(IN_RANGE, st.none()), min_size=1, max_size=30))
@example(
    [
        100 / 3,
        2 / 3 * 100,
        0.1 + 0.2,
        -0.391,
        1e-12,
        -1e-12,
        127.99999999999999,
        8.774233438561719,
        0.0,
        math.nextafter(1e-12, 1),
        1 / 3,
        66.66666666666667,
        99.99999999999999,
        -0.0,
    ]
)
def test_sqlite_floats_travel_exactly_as_two_integers(values: list[float | None]) -> None:
    """In SQLite's range of ``_exact_parts`` the floats come back bit for bit without the driver."""
    with Session(_SQLITE) as session:
        session.execute(insert(_FLOATS), [{"rid": n % 4, "value": value} for n, value in enumerate(values)])
        reader = _ArrowReader(session)
        columns = reader.columns_in(
            select(_FLOATS.c.rid, _FLOATS.c.value), _FLOATS.c.rid, [0, 1, 2, 3], key=(_FLOATS.c.rid, _FLOATS.c.id)
        )
        got = sorted(zip(columns["id"].to_pylist(), map(_bits, columns["value"].to_pylist())))
        stored = session.execute(select(_FLOATS.c.id, _FLOATS.c.value).order_by(_FLOATS.c.id)).all()
        assert got == [(row.id, _bits(row.value)) for row in stored]
        assert [row.value for row in stored] == values  # SQLite keeps them (-0.0 as 0.0, which compares equal)
        assert reader.float_fallbacks == 0
        session.rollback()


def test_sqlite_floats_outside_that_range_come_through_the_driver() -> None:
    values = [5e-324, 1e-13, 128.0, -1e22, 1.7976931348623157e308, 50.0]
    with Session(_SQLITE) as session:
        session.execute(insert(_FLOATS), [{"rid": 0, "value": value} for value in values])
        session.execute(insert(_FLOATS), [{"rid": 1, "value": 100 / 3}])
        reader = _ArrowReader(session)
        columns = reader.columns_in(
            select(_FLOATS.c.rid, _FLOATS.c.value), _FLOATS.c.rid, [0, 1], batch=1, key=(_FLOATS.c.rid, _FLOATS.c.id)
        )
        assert columns["value"].to_pylist() == [*values, 100 / 3]
        assert reader.float_fallbacks == 1  # the chunk of rid 0 only
        session.rollback()


def test_floats_without_a_key_come_through_the_driver(session) -> None:
    populate(session, n_patients=2)
    stmt = select(Score.response_id, Score.value)
    ids = session.execute(select(Response.id)).scalars().all()
    columns = _ArrowReader(session).columns_in(stmt, Score.response_id, ids)
    got = sorted(zip(*(columns[name].to_pylist() for name in ("response_id", "value"))), key=repr)
    assert got == sorted(_driver_rows(session, stmt), key=repr)


@pytest.mark.parametrize("path", ["default", "driver", "epoch"])
def test_timepoints_and_responses_come_back_exactly(session, path: str) -> None:
    """Also through the fallbacks on PostgreSQL: the driver's rows (``extra_float_digits`` < 1) and
    instants as epoch microseconds (``DateStyle`` not ISO)."""
    populate(session, n_patients=3)
    session.execute(update(Timepoint).where(Timepoint.id % 3 == 0).values(missed_reason='拒绝, "太累"\n'))
    session.execute(update(Timepoint).where(Timepoint.id % 3 == 1).values(missed_reason=""))
    session.execute(
        update(Response)
        .where(Response.id % 2 == 0)
        .values(
            language='q"r,', instrument_version="", submitted_at=dt.datetime(2026, 2, 3, 4, 5, 6, 789, tzinfo=dt.UTC)
        )
    )
    reader = _ArrowReader(session)
    if path == "driver":
        reader.mode = "driver"
    elif path == "epoch":
        reader.iso_times = False
    for model, types in ((Timepoint, TIMEPOINT_TYPES), (Response, RESPONSE_TYPES)):
        stmt = select(*(getattr(model, name) for name in types if name not in ("done", "instruments")))
        names = list(stmt.selected_columns.keys())
        ids = session.execute(select(model.id)).scalars().all()
        columns = _frame(reader.columns_in(stmt, model.id, ids), {name: types[name] for name in names})
        got = sorted(zip(*(columns[name].to_pylist() for name in names)))
        want = sorted(session.execute(stmt).all())
        assert got == [tuple(row) for row in want], model.__name__


def test_awkward_text_reaches_both_long_files_alike(session, tmp_path: Path) -> None:
    populate(session, n_patients=6)
    session.execute(update(Timepoint).where(Timepoint.id % 2 == 0).values(missed_reason='漏填, "太累"\r\n再试'))
    session.execute(update(Response).where(Response.id % 3 == 0).values(language='zh,"x"', instrument_version="3.0\n"))
    session.execute(update(Score).where(Score.id % 5 == 0).values(value=100 / 3))
    session.execute(update(Score).where(Score.id % 5 == 1).values(value=1 / 3 * 100, scoring_version="v,1"))
    session.flush()
    assert_both_paths_write_the_same_bytes(session, ExportSpec(filters=ExportFilters(), as_of=AS_OF), tmp_path)
    text = (tmp_path / "rows" / "qol_long.csv").read_bytes().decode("utf-8")
    assert '"漏填, ""太累""\r\n再试"' in text and '"zh,""x"""' in text and "33.333333333333336" in text


@pytest.mark.parametrize("page_bytes", [1 << 20, 64])
@pytest.mark.parametrize("sizes", [[7, 1, 30, 12], [50], [13, 37], []])
def test_row_groups_from_pieces_write_the_contiguous_bytes(tmp_path: Path, sizes: list[int], page_bytes: int) -> None:
    total = sum(sizes)
    table = pa.table(
        {
            "n": pa.array(range(total), pa.int64()),
            "s": pa.array([None if i % 7 == 0 else f"v{i % 5}" * (i % 3) for i in range(total)], pa.string()),
            "f": pa.array([i / 3 for i in range(total)], pa.float64()),
            "b": pa.array([i % 2 == 0 for i in range(total)], pa.bool_()),
        }
    )
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    batches = [
        table.slice(start, size).combine_chunks().to_batches()[0] if size else None
        for start, size in zip(starts, sizes)
    ]
    pieces, whole = tmp_path / "pieces.parquet", tmp_path / "whole.parquet"
    options = {"compression": "snappy", "data_page_size": page_bytes, "dictionary_pagesize_limit": page_bytes}
    with pq.ParquetWriter(pieces, table.schema, **options) as out:
        for group in row_groups([b for b in batches if b is not None], 20, page_bytes):
            out.write_table(group, row_group_size=20)
    with pq.ParquetWriter(whole, table.schema, **options) as out:
        for start in range(0, total, 20):
            out.write_table(table.slice(start, 20).combine_chunks(), row_group_size=20)
    assert pieces.read_bytes() == whole.read_bytes()
