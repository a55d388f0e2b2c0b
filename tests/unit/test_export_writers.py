"""Export datasets, format writers, manifest and zip: round trips, streaming, reproducible bytes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyreadstat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from qol_app.export import (
    LONG_SCORED_COLUMNS,
    WRITERS,
    Column,
    Dataset,
    build_manifest,
    checked_rows,
    data_dictionary,
    long_scored_dataset,
    write_dataset,
    write_zip,
)
from qol_app.export.manifest import MANIFEST_NAME
from qol_app.export.writers.arrow import arrow_schema
from qol_app.export.writers.xpt import xpt_version

AS_OF = datetime(2026, 3, 31, 16, 45, 10, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))


def bi(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh_Hans": zh}


COLUMNS = (
    Column("pid", "string", bi("Study ID", "研究编号")),
    Column(
        "severity",
        "integer",
        bi("Headache severity", "头痛严重程度"),
        {0: bi("None", "无"), 4: bi("Very severe", "非常严重")},
    ),
    Column("score", "float", bi("Score", "得分")),
    Column("visit_day", "date", bi("Visit date", "访视日期")),
    Column("done_at", "datetime", bi("Completed (UTC)", "完成时间（UTC）")),
    Column("proxy", "boolean", bi("Answered by proxy", "代答")),
    Column(
        "reason",
        "string",
        bi("Missing reason", "缺失原因"),
        {"too_ill": bi("Too ill", "病情过重"), "refused": bi("Refused", "拒绝")},
    ),
    Column("note", "string", bi("Note", "备注")),
)
ROWS: list[tuple[Any, ...]] = [
    (
        "P-001",
        4,
        66.66666666666667,
        date(2026, 3, 1),
        datetime(2026, 3, 1, 9, 15, 30, tzinfo=SHANGHAI),
        False,
        None,
        '头痛, "严重"\r\n第二行',
    ),
    ("P-002", None, None, None, None, None, "too_ill", None),
    ("P-003", 0, 0.0, date(1959, 12, 31), datetime(2026, 1, 1, tzinfo=UTC), True, "refused", "=1+1"),
]
STATS = ("xpt", "dta", "sav")
READERS = {"xpt": pyreadstat.read_xport, "dta": pyreadstat.read_dta, "sav": pyreadstat.read_sav}


def sample(rows: Any = None, name: str = "sample") -> Dataset:
    return Dataset(name, bi("Sample data", "样例数据"), COLUMNS, iter(ROWS if rows is None else rows))


def write(fmt: str, out: Path, **kwargs: Any) -> Path:
    return write_dataset(fmt, sample(), out, as_of=AS_OF, **kwargs)


def is_missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


# --- schema rules --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["1st", "_x", "x_", "with", "BY", "str12", "a b", "é", "x" * 33])
def test_column_names_must_suit_sas_stata_and_spss(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Column(name, "string", bi("L", "标"))


def test_every_label_needs_both_languages() -> None:
    with pytest.raises(ValueError, match="zh_Hans"):
        Column("x", "string", {"en": "Only English"})
    with pytest.raises(ValueError, match="zh_Hans"):
        Column("x", "integer", bi("X", "叉"), {1: {"en": "one"}})


def test_value_labels_must_match_the_column_type() -> None:
    with pytest.raises(ValueError, match="not integer"):
        Column("x", "integer", bi("X", "叉"), {"1": bi("one", "一")})
    with pytest.raises(ValueError, match="integer or string"):
        Column("x", "float", bi("X", "叉"), {1: bi("one", "一")})


def test_column_names_are_unique_ignoring_case() -> None:
    col = Column("Visit", "string", bi("V", "访"))
    with pytest.raises(ValueError, match="duplicate"):
        Dataset("d", bi("D", "数"), (col, Column("visit", "string", bi("V", "访"))), [])


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("P", "4", None, None, None, None, None, None), "severity.*expected int"),
        (("P", True, None, None, None, None, None, None), "severity.*expected int"),
        (("P", None, float("nan"), None, None, None, None, None), "score.*finite"),
        (("P", None, None, datetime(2026, 1, 1, tzinfo=UTC), None, None, None, None), "visit_day"),
        (("P", None, None, None, datetime(2026, 1, 1), None, None, None), "done_at.*timezone-aware"),
        (("P", None), "2 values for 8 columns"),
    ],
)
def test_bad_rows_fail_with_row_number_and_column(row: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"sample row 2: .*{message}"):
        list(checked_rows(sample([ROWS[0], row])))


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    def rows() -> Iterator[tuple[Any, ...]]:
        yield ROWS[0]
        raise RuntimeError("database went away")

    temp_dir = Path(tempfile.gettempdir())
    before = set(temp_dir.glob("openpyxl.*"))
    for fmt in WRITERS:
        with pytest.raises(RuntimeError):
            write_dataset(fmt, sample(rows()), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert set(temp_dir.glob("openpyxl.*")) == before  # xlsx cleans up its sheet spool


def test_unknown_format_and_locale(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="sas7bdat"):
        write_dataset("sas7bdat", sample(), tmp_path)
    with pytest.raises(ValueError, match="locale"):
        write_dataset("csv", sample(), tmp_path, locale="fr")


# --- round trips ---------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    raw = write("csv", tmp_path).read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM, see writers/csv.py
    assert raw.split(b"\r\n")[0] == b"pid,severity,score,visit_day,done_at,proxy,reason,note"
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert lines[1] == [
        "P-001",
        "4",
        "66.66666666666667",
        "2026-03-01",
        "2026-03-01T01:15:30Z",
        "0",
        "",
        '头痛, "严重"\r\n第二行',
    ]
    assert lines[2] == ["P-002", "", "", "", "", "", "too_ill", ""]
    assert lines[3][3:6] == ["1959-12-31", "2026-01-01T00:00:00Z", "1"]
    frame = pd.read_csv(tmp_path / "sample.csv", dtype={"pid": str})
    assert frame["score"].iloc[0] == ROWS[0][2]


def with_batches(dataset: Dataset, size: int = 2) -> Dataset:
    """The same dataset carrying its (checked) rows as Arrow batches of `size` rows."""
    schema = arrow_schema(dataset)
    rows = list(checked_rows(dataset))
    batches = [
        pa.record_batch(
            [pa.array(values, f.type) for values, f in zip(zip(*rows[at : at + size]), schema)], schema=schema
        )
        for at in range(0, len(rows), size)
    ]
    return Dataset(dataset.name, dataset.label, dataset.columns, [], batches=batches)


MORE_ROWS = [
    *ROWS,
    ("P-004", -3, -0.0, date(2026, 2, 28), datetime(2026, 3, 1, 1, 2, 3, 45, tzinfo=UTC), None, "", '"'),
    ("P-005", 10**12, 1e-05, None, None, True, "a\rb", "x\ny"),
    ("P-006", None, 1e16, None, None, False, ",", "123456789.125"),
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_arrow_batches_write_the_same_bytes_as_rows(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "rows").mkdir()
    (tmp_path / "batches").mkdir()
    by_rows = write_dataset(fmt, sample(MORE_ROWS), tmp_path / "rows", as_of=AS_OF)
    by_batches = write_dataset(fmt, with_batches(sample(MORE_ROWS)), tmp_path / "batches", as_of=AS_OF)
    assert by_batches.read_bytes() == by_rows.read_bytes()


def test_arrow_batches_are_checked_like_rows(tmp_path: Path) -> None:
    good = with_batches(sample())
    bad = pa.record_batch(
        [
            c if f.name != "score" else pa.array([math.inf])
            for c, f in zip(good.batches[1].columns, good.batches[1].schema)
        ],
        schema=good.batches[1].schema,
    )
    for fmt in ("csv", "parquet"):
        dataset = Dataset("sample", good.label, COLUMNS, [], batches=[good.batches[0], bad])
        with pytest.raises(ValueError, match="sample row 3: column 'score': expected a finite float"):
            write_dataset(fmt, dataset, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_arrow_batches_stop_on_either_sides_error(tmp_path: Path) -> None:
    """Batches are produced in this thread and written in another: an error in producing them (the
    database) or in writing them (a check) stops both, is raised, and leaves no file."""
    good = with_batches(sample())
    bad = pa.record_batch(
        [
            c if f.name != "score" else pa.array([math.nan])
            for c, f in zip(good.batches[1].columns, good.batches[1].schema)
        ],
        schema=good.batches[1].schema,
    )
    produced = []

    def failing_reads() -> Iterator[pa.RecordBatch]:
        yield good.batches[0]
        raise RuntimeError("database went away")

    def endless_after(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        yield batch
        while True:
            produced.append(1)
            yield good.batches[0]

    for fmt in ("csv", "parquet"):
        with pytest.raises(RuntimeError, match="went away"):
            write_dataset(fmt, Dataset("sample", good.label, COLUMNS, [], batches=failing_reads()), tmp_path)
        with pytest.raises(ValueError, match="expected a finite float"):
            write_dataset(fmt, Dataset("sample", good.label, COLUMNS, [], batches=endless_after(bad)), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert len(produced) < 100


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=("Cs",))), min_size=1, max_size=5))
def test_csv_of_any_text_from_arrow_batches_is_the_rows_csv(texts: list[str]) -> None:
    column = Column("t", "string", bi("Text", "文本"))
    with tempfile.TemporaryDirectory() as folder:  # hypothesis re-runs the body; no tmp_path here
        dataset = Dataset("texts", bi("T", "文"), (column,), [(t,) for t in texts])
        expected = write_dataset("csv", dataset, Path(folder)).read_bytes()
        dataset = Dataset("texts", bi("T", "文"), (column,), [(t,) for t in texts])
        assert write_dataset("csv", with_batches(dataset, 3), Path(folder)).read_bytes() == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=("Cs",))), min_size=1, max_size=5))
def test_csv_any_text_round_trips(texts: list[str]) -> None:
    column = Column("t", "string", bi("Text", "文本"))
    with tempfile.TemporaryDirectory() as folder:  # hypothesis re-runs the body; no tmp_path here
        out = write_dataset("csv", Dataset("texts", bi("T", "文"), (column,), [(t,) for t in texts]), Path(folder))
        with out.open(encoding="utf-8", newline="") as handle:
            read = [row[0] if row else "" for row in list(csv.reader(handle))[1:]]
    assert read == texts


def test_parquet_round_trip(tmp_path: Path) -> None:
    table = pq.read_table(write("parquet", tmp_path))
    schema = table.schema
    assert [str(f.type) for f in schema] == [
        "string",
        "int64",
        "double",
        "date32[day]",
        "timestamp[us, tz=UTC]",
        "bool",
        "string",
        "string",
    ]
    severity = schema.field("severity").metadata
    assert severity[b"label_zh_Hans"].decode() == "头痛严重程度"
    assert json.loads(severity[b"value_labels"])["4"]["zh_Hans"] == "非常严重"
    assert json.loads(schema.metadata[b"qol.label"])["zh_Hans"] == "样例数据"
    rows = table.to_pylist()
    assert rows[0]["note"] == ROWS[0][7]
    assert rows[0]["done_at"] == datetime(2026, 3, 1, 1, 15, 30, tzinfo=UTC)
    assert rows[1] == {
        "pid": "P-002",
        "severity": None,
        "score": None,
        "visit_day": None,
        "done_at": None,
        "proxy": None,
        "reason": "too_ill",
        "note": None,
    }
    assert rows[2]["visit_day"] == date(1959, 12, 31) and rows[2]["proxy"] is True


@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
def test_xlsx_round_trip(tmp_path: Path, locale: str) -> None:
    book = load_workbook(write("xlsx", tmp_path, locale=locale))
    data = list(book["sample"].iter_rows(values_only=True))
    assert data[0] == tuple(c.name for c in COLUMNS)
    assert data[1][:6] == ("P-001", 4, 66.66666666666667, datetime(2026, 3, 1), datetime(2026, 3, 1, 1, 15, 30), False)
    assert data[1][7] == ROWS[0][7].replace("\r\n", "\n")  # see writers/xlsx.py
    assert data[2] == ("P-002", None, None, None, None, None, "too_ill", None)
    assert data[3][7] == "=1+1"  # text, not a formula
    assert book["sample"]["H4"].data_type == "s"
    variables = {row[0]: row for row in book["variables"].iter_rows(values_only=True)}
    label = "头痛严重程度" if locale == "zh_Hans" else "Headache severity"
    assert variables["severity"][2] == label
    assert "4 = " + ("非常严重" if locale == "zh_Hans" else "Very severe") in variables["severity"][3]
    assert book.properties.created == book.properties.modified == datetime(2026, 3, 31, 16, 45, 10)


@pytest.mark.parametrize("fmt", ["dta", "sav"])
def test_stata_and_spss_round_trip_with_labels(tmp_path: Path, fmt: str) -> None:
    path = write(fmt, tmp_path, locale="zh_Hans")
    frame, meta = READERS[fmt](path)
    assert meta.column_names_to_labels["severity"] == "头痛严重程度"
    assert meta.variable_value_labels["severity"] == {0: "无", 4: "非常严重"}
    assert meta.variable_value_labels["proxy"] == {0: "否", 1: "是"}
    if fmt == "sav":
        assert meta.variable_value_labels["reason"] == {"too_ill": "病情过重", "refused": "拒绝"}
    else:
        assert "reason" not in meta.variable_value_labels  # Stata cannot label strings
    assert frame["pid"].tolist() == ["P-001", "P-002", "P-003"]
    assert frame["note"].iloc[0] == ROWS[0][7]
    assert [None if is_missing(v) else int(v) for v in frame["severity"]] == [4, None, 0]
    assert frame["score"].iloc[0] == ROWS[0][2] and is_missing(frame["score"].iloc[1])
    assert frame["visit_day"].iloc[0] == date(2026, 3, 1) and is_missing(frame["visit_day"].iloc[1])
    assert frame["visit_day"].iloc[2] == date(1959, 12, 31)
    assert frame["done_at"].iloc[0] == pd.Timestamp("2026-03-01 01:15:30")
    assert [None if is_missing(v) else int(v) for v in frame["proxy"]] == [0, None, 1]
    if fmt == "sav":  # "" is declared user-missing so None survives
        assert is_missing(frame["reason"].iloc[0]) and is_missing(frame["note"].iloc[1])
    labelled, _ = READERS[fmt](path, apply_value_formats=True)
    assert labelled["severity"].iloc[0] == "非常严重"


def test_xpt_round_trip_uses_english_labels_and_version_8_for_long_names(tmp_path: Path) -> None:
    path = write("xpt", tmp_path, locale="zh_Hans")
    frame, meta = pyreadstat.read_xport(path)
    assert xpt_version(sample()) == 8 and path.read_bytes().startswith(b"HEADER RECORD*******LIBV8")
    assert meta.column_names_to_labels["severity"] == "Headache severity"
    assert meta.table_name == "SAMPLE"
    assert frame["note"].iloc[0] == ROWS[0][7]  # UTF-8 bytes, read back as UTF-8
    assert frame["visit_day"].iloc[0] == date(2026, 3, 1)
    assert frame["done_at"].iloc[0] == pd.Timestamp("2026-03-01 01:15:30")
    assert is_missing(frame["severity"].iloc[1])


def test_xpt_version_5_when_the_schema_fits_and_its_string_limit(tmp_path: Path) -> None:
    cols = (Column("USUBJID", "string", bi("Unique Subject Identifier", "受试者唯一标识")),)
    short = Dataset("qs", bi("Questionnaires", "问卷"), cols, [("CONQUER-001",)])
    path = write_dataset("xpt", short, tmp_path)
    assert path.read_bytes().startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD")
    frame, _ = pyreadstat.read_xport(path)
    assert frame["USUBJID"].tolist() == ["CONQUER-001"]
    too_long = Dataset("qs", bi("Questionnaires", "问卷"), cols, [("x" * 201,)])
    with pytest.raises(ValueError, match="200 bytes"):
        write_dataset("xpt", too_long, tmp_path)


def test_all_none_columns_and_empty_datasets_write_everywhere(tmp_path: Path) -> None:
    empty_row = ("P",) + (None,) * 7
    for fmt in WRITERS:
        for rows, name in (([empty_row], "nones"), ([], "empty")):
            path = write_dataset(fmt, sample(rows, name), tmp_path)
            assert path.stat().st_size > 0


def test_long_scored_file_writes_in_every_format(tmp_path: Path) -> None:
    required = [
        "patient_id",
        "site",
        "arm",
        "timepoint",
        "instrument",
        "scale",
        "score",
        "n_items",
        "target_date",
        "completed_at",
        "status",
        "respondent",
        "mode",
        "missing_reason",
    ]
    names = [c.name for c in LONG_SCORED_COLUMNS]
    assert all(n in names for n in required)
    row = {n: None for n in names} | {
        "patient_id": "P-001",
        "site": "S01",
        "arm": "A",
        "status": "missed",
        "timepoint": "baseline",
        "instrument": "qlq_c30",
        "scale": "QL2",
        "n_items": 0,
        "target_date": date(2026, 3, 1),
        "missing_reason": "too_ill",
    }
    for fmt in WRITERS:
        path = write_dataset(fmt, long_scored_dataset([tuple(row[n] for n in names)]), tmp_path)
        assert path.name == f"qol_long.{fmt}"


def test_data_dictionary_lists_every_column_and_code(tmp_path: Path) -> None:
    dictionary = data_dictionary([sample([]), long_scored_dataset([])])
    rows = list(checked_rows(dictionary))
    variables = [(r[0], r[1]) for r in rows if r[7] is None]
    assert variables[: len(COLUMNS)] == [("sample", c.name) for c in COLUMNS]
    assert len(variables) == len(COLUMNS) + len(LONG_SCORED_COLUMNS)
    codes = {(r[1], r[7]): (r[8], r[9]) for r in rows if r[7] is not None}
    assert codes[("severity", "4")] == ("Very severe", "非常严重")
    assert codes[("proxy", "1")] == ("Yes", "是")
    assert codes[("missing_reason", "cognitive_impairment")][1] == "认知障碍"
    severity = next(r for r in rows if r[1] == "severity" and r[7] is None)
    assert severity[3:6] == ("integer", "Headache severity", "头痛严重程度")
    table = pq.read_table(write_dataset("parquet", data_dictionary([sample([])]), tmp_path))
    assert table.num_rows == len(COLUMNS) + 2 + 2 + 2  # + codes of severity, proxy, reason


# --- streaming -----------------------------------------------------------------------------


def _many_rows(n: int) -> Iterator[tuple[Any, ...]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        yield (
            f"P-{i:06d}",
            i % 5,
            i / 7,
            date(2026, 1, 1) + timedelta(days=i % 365),
            start + timedelta(seconds=i),
            i % 2 == 0,
            "too_ill" if i % 3 else None,
            f"note {i}",
        )


_RSS_PROBE = """
import os, sys
from pathlib import Path
from tests.unit.test_export_writers import _many_rows, sample
from qol_app.export import write_dataset

def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

marks = {}
def rows():
    for i, row in enumerate(_many_rows(200_000)):
        if i in (50_000, 150_000):  # both at a Parquet row-group boundary
            marks[i] = resident_bytes()
        yield row

write_dataset(sys.argv[1], sample(rows(), "big"), Path(sys.argv[2]))
print((marks[150_000] - marks[50_000]) / 2**20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("fmt", ["csv", "parquet", "sav"])
def test_streaming_formats_do_not_grow_with_row_count(tmp_path: Path, fmt: str) -> None:
    """Resident memory while rows 50k..150k of 200k are consumed: flat when streaming.

    Measured in a fresh process (tracemalloc would miss Arrow's allocator and slow the run
    tenfold). sav spools the rows to disk first (the whole write is measured in test_export_spool).
    """
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", _RSS_PROBE, fmt, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=True,
    )
    growth_mib = float(result.stdout)
    assert WRITERS[fmt].streams
    assert growth_mib < 10, growth_mib
    if fmt == "parquet":
        assert pq.ParquetFile(tmp_path / "big.parquet").metadata.num_row_groups == 4
    if fmt == "csv":
        with (tmp_path / "big.csv").open(encoding="utf-8") as handle:
            assert sum(1 for _ in handle) == 200_001


def test_rows_are_pulled_lazily(tmp_path: Path) -> None:
    """The writer consumes the generator as it writes: the file grows while rows are produced."""
    sizes: list[int] = []

    def rows() -> Iterator[tuple[Any, ...]]:
        for i, row in enumerate(_many_rows(120_000)):
            if i == 110_000:
                partial = [p for p in tmp_path.iterdir() if p.name.startswith(".lazy.")]
                sizes.append(partial[0].stat().st_size)
            yield row

    write_dataset("parquet", sample(rows(), "lazy"), tmp_path)
    assert sizes and sizes[0] > 100_000  # two row groups already on disk


# --- reproducible bytes --------------------------------------------------------------------


@pytest.fixture
def other_timezone() -> Iterator[None]:
    """Switch the process's local timezone, which ReadStat and zipfile use for their timestamps."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_same_rows_give_identical_bytes(tmp_path: Path, fmt: str, other_timezone: None) -> None:
    (tmp_path / "a").mkdir()
    first = write(fmt, tmp_path / "a").read_bytes()
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    time.sleep(1.1)  # and a different second on the clock
    (tmp_path / "b").mkdir()
    second = write(fmt, tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.parametrize("fmt", STATS)
def test_header_times_are_the_as_of_time(tmp_path: Path, fmt: str) -> None:
    head = write(fmt, tmp_path).read_bytes()[:1024]
    stamp = {"xpt": b"31MAR26:16:45:10", "sav": b"31 Mar 2616:45:10", "dta": b"31 Mar 2026 16:45"}[fmt]
    assert stamp in head
    if fmt == "xpt":
        assert head.count(stamp) == 4


def test_as_of_changes_xlsx_metadata_only(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_dataset("xlsx", sample(), tmp_path / "a", as_of=AS_OF)
    b = write_dataset("xlsx", sample(), tmp_path / "b", as_of=AS_OF + timedelta(days=1))
    assert a.read_bytes() != b.read_bytes()
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        assert [i.date_time for i in za.infolist()] == [(2026, 3, 31, 16, 45, 10)] * len(za.infolist())
        differing = [n for n in za.namelist() if za.read(n) != zb.read(n)]
    assert differing == ["docProps/core.xml"]


# --- manifest and zip ----------------------------------------------------------------------


def _export(out: Path) -> list[Path]:
    return [write_dataset(fmt, sample(), out, as_of=AS_OF) for fmt in ("csv", "parquet", "sav")]


def _manifest(files: list[Path]) -> dict[str, Any]:
    return build_manifest(
        files,
        app_version="1.4.0",
        scoring_version="eortc-3rd-ed",
        instrument_versions={"qlq_c30": "3.0", "bn20": "1.0"},
        filters={"sites": {"S02", "S01"}, "until": date(2026, 3, 31)},
        as_of=AS_OF,
    )


def test_manifest_has_sha256_of_each_file(tmp_path: Path) -> None:
    files = _export(tmp_path)
    manifest = _manifest(files)
    assert [f["name"] for f in manifest["files"]] == ["sample.csv", "sample.parquet", "sample.sav"]
    for entry in manifest["files"]:
        data = (tmp_path / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
    assert manifest["as_of"] == "2026-03-31T16:45:10Z"
    assert manifest["filters"] == {"sites": ["S01", "S02"], "until": "2026-03-31"}
    assert manifest["instrument_versions"] == {"bn20": "1.0", "qlq_c30": "3.0"}
    json.dumps(manifest)


def test_zip_is_deterministic_and_contains_the_manifest(tmp_path: Path, other_timezone: None) -> None:
    files = _export(tmp_path)
    manifest = _manifest(files)
    first = write_zip(files, manifest, tmp_path / "one.zip", AS_OF).read_bytes()
    os.environ["TZ"] = "UTC"
    time.tzset()
    second = write_zip(list(reversed(files)), manifest, tmp_path / "two.zip", AS_OF).read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        assert archive.namelist() == sorted(["sample.csv", "sample.parquet", "sample.sav", MANIFEST_NAME])
        assert {i.date_time for i in archive.infolist()} == {(2026, 3, 31, 16, 45, 10)}
        assert json.loads(archive.read(MANIFEST_NAME)) == manifest
        for entry in manifest["files"]:
            assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]


def test_zip_refuses_files_changed_after_the_manifest(tmp_path: Path) -> None:
    files = _export(tmp_path)
    manifest = _manifest(files)
    with files[0].open("a", encoding="utf-8") as handle:
        handle.write("tampered\r\n")
    with pytest.raises(ValueError, match="sample.csv changed"):
        write_zip(files, manifest, tmp_path / "export.zip", AS_OF)
    assert not (tmp_path / "export.zip").exists()
    with pytest.raises(ValueError, match="do not match"):
        write_zip(files[1:], manifest, tmp_path / "export.zip", AS_OF)
