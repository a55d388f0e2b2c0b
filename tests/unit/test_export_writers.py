"""Every writer, read back by an independent reader: pandas' own SAS XPORT and Stata readers,
pyreadstat, pyarrow, openpyxl and the csv module. Plus the schema rules, manifest and zip."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest
from openpyxl import load_workbook

from qol_app.export.manifest import MANIFEST_NAME, build_manifest, file_entries, write_zip
from qol_app.export.schema import Column, Dataset, bi, check_name, data_dictionary, numeric_codes, table_of
from qol_app.export.writers import WRITERS, write_dataset
from qol_app.export.writers.xpt import ibm_doubles

UTC = dt.UTC
AS_OF = dt.datetime(2026, 3, 31, 16, 45, 10, tzinfo=UTC)
AWKWARD = [100 / 6, 0.1 + 0.2, -1 / 3, 5e-78, 123456789.123456789, 2.0**52 + 1, 0.0, 1e75, 7.5]
STATUS = {"completed": bi("Completed", "已完成"), "missed": bi("Missed", "缺失")}
COLUMNS = (
    Column("patient_id", "string", bi("Pseudonymous study ID", "研究编号"), xpt="PATID"),
    Column("status", "string", bi("Form status", "问卷状态"), STATUS),
    Column("score", "float", bi("Score", "得分")),
    Column("n_items", "integer", bi("Items answered", "已答条目数"), xpt="NITEMS"),
    Column("target_date", "date", bi("Target date", "目标日期"), xpt="TARGETDT"),
    Column("completed_at", "datetime", bi("Completed at (UTC)", "完成时间"), xpt="COMPLDTM"),
    Column("is_baseline", "boolean", bi("Baseline assessment", "基线评估"), xpt="BASELINE"),
)


def sample(rows=None) -> Dataset:
    rows = rows or [
        (
            f"S01-{n:03d}",
            "completed" if n % 3 else "missed",
            value if n % 3 else None,
            n % 5,
            dt.date(2026, 1, 1) + dt.timedelta(days=n),
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + dt.timedelta(hours=n),
            n == 0,
        )
        for n, value in enumerate(AWKWARD)
    ]
    rows.append(("S01-999", None, None, None, None, None, None))
    # last, a full row: pandas' XPORT reader takes trailing blank words of short records for padding
    rows.append(("S01-998", "completed", 1.0, 1, dt.date(2026, 2, 1), None, False))
    return Dataset("sample", bi("Sample dataset", "样例数据集"), COLUMNS, table_of(COLUMNS, rows), xpt="SAMPLE")


def test_column_names_must_suit_sas_stata_and_spss() -> None:
    for bad in ("1abc", "a-b", "abc_", "x" * 33, "by", "STR12", "中文"):
        with pytest.raises(ValueError):
            check_name(bad)
    with pytest.raises(ValueError, match="XPT name"):
        Column("a_long_column_name", "string", bi("A", "甲"))  # longer than 8 and no XPT name
    with pytest.raises(ValueError, match="XPT label"):
        Column("x", "string", bi("A label that is much longer than forty characters", "甲"))
    with pytest.raises(ValueError, match="used twice"):
        Dataset("d", bi("D", "乙"), (COLUMNS[0], Column("patid", "string", bi("B", "乙"))), table_of([], []))


def test_every_label_needs_both_languages_and_codes_their_type() -> None:
    with pytest.raises(ValueError, match="zh_Hans"):
        Column("x", "string", {"en": "X"})
    with pytest.raises(ValueError, match="is not integer"):
        Column("x", "integer", bi("X", "乙"), {"a": bi("A", "甲")})


def test_the_table_must_match_the_schema_and_hold_no_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Dataset("d", bi("D", "乙"), (COLUMNS[2],), table_of((COLUMNS[2],), [(math.nan,)]))
    with pytest.raises(ValueError, match="schema"):
        Dataset("d", bi("D", "乙"), (COLUMNS[2],), table_of((COLUMNS[3],), [(1,)]))


def test_xpt_is_version_5_and_pandas_and_pyreadstat_read_it_exactly(tmp_path: Path) -> None:
    path = write_dataset("xpt", sample(), tmp_path, as_of=AS_OF)
    data = path.read_bytes()
    assert data.startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!")
    assert b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140" in data
    assert b"LIBV8" not in data and len(data) % 80 == 0
    assert b"31MAR26:16:45:10" in data  # the as-of time, not the clock
    frame = pd.read_sas(path, format="xport", encoding="ascii")
    # pandas' reader decodes IBM zero (all zero bytes, as SAS writes it) as 5.4e-79: its known limitation
    frame = frame.mask(frame.map(lambda v: isinstance(v, float) and abs(v) < 1e-78), 0.0)
    assert list(frame.columns) == ["PATID", "STATUS", "SCORE", "NITEMS", "TARGETDT", "COMPLDTM", "BASELINE"]
    scores = frame["SCORE"].tolist()
    for n, value in enumerate(AWKWARD):
        if n % 3:
            assert struct.pack(">d", scores[n]) == struct.pack(">d", value), (n, value)  # bit for bit
        else:
            assert math.isnan(scores[n])
    assert frame["STATUS"].tolist()[:2] == ["missed", "completed"] and frame["STATUS"].tolist()[-2] == ""
    assert frame["TARGETDT"].iloc[0] == (dt.date(2026, 1, 1) - dt.date(1960, 1, 1)).days  # SAS date
    assert frame["COMPLDTM"].iloc[1] == (dt.datetime(2026, 1, 2, 4, 4, 5) - dt.datetime(1960, 1, 1)).total_seconds()
    other, meta = pyreadstat.read_xport(path)
    assert other["TARGETDT"].iloc[0] == dt.date(2026, 1, 1) and len(other) == len(AWKWARD) + 2
    assert other["COMPLDTM"].iloc[1] == dt.datetime(2026, 1, 2, 4, 4, 5)
    assert meta.table_name == "SAMPLE" and meta.file_label == "Sample dataset"
    assert meta.column_names_to_labels["PATID"] == "Pseudonymous study ID"
    assert other["BASELINE"].tolist()[:2] == [1.0, 0.0]


def test_ibm_doubles_match_known_bit_patterns() -> None:
    import numpy as np

    out = ibm_doubles(np.array([1.0, -118.625, 0.0, math.nan, 0.5]))
    assert [format(int(v), "016x") for v in out.view(">u8")] == [
        "4110000000000000",
        "c276a00000000000",
        "0000000000000000",
        "2e00000000000000",
        "4080000000000000",
    ]
    with pytest.raises(ValueError, match="range"):
        ibm_doubles(np.array([1e300]))


def test_xpt_refuses_non_ascii_and_long_text_and_leaves_out_marked_columns(tmp_path: Path) -> None:
    chinese = sample([("中文", None, None, None, None, None, None)])
    with pytest.raises(ValueError, match="not ASCII"):
        write_dataset("xpt", chinese, tmp_path)
    long = sample([("x" * 201, None, None, None, None, None, None)])
    with pytest.raises(ValueError, match="200 bytes"):
        write_dataset("xpt", long, tmp_path)
    assert not list(tmp_path.glob("*.xpt")) and not list(tmp_path.glob(".sample*"))  # nothing half-written
    folded = sample([("Pain – “mild”", None, None, None, None, None, None)])
    frame = pd.read_sas(write_dataset("xpt", folded, tmp_path), format="xport", encoding="ascii")
    assert frame["PATID"].iloc[0] == 'Pain - "mild"'
    dictionary = data_dictionary([sample()])
    frame = pd.read_sas(write_dataset("xpt", dictionary, tmp_path), format="xport", encoding="ascii")
    assert "LABELZH" not in frame.columns and "XPTNAME" in frame.columns


def test_stata_labels_every_coded_variable_and_pandas_reads_it(tmp_path: Path) -> None:
    path = write_dataset("dta", sample(), tmp_path, locale="zh_Hans", as_of=AS_OF)
    with pd.io.stata.StataReader(path) as reader:
        frame = reader.read()
        labels = reader.value_labels()
        variables = reader.variable_labels()
        assert reader.data_label == "样例数据集"
    assert variables["status"] == "问卷状态"
    assert set(frame["status"].dropna()) == {"已完成", "缺失"}  # labelled integers, decoded
    codes = numeric_codes(COLUMNS[1])
    raw = pd.read_stata(path, convert_categoricals=False)
    assert raw["status"].tolist()[:2] == [codes["missed"], codes["completed"]]
    assert any(set(v.values()) == {"否", "是"} for v in labels.values())  # booleans labelled too
    assert raw["score"].tolist()[1] == AWKWARD[1] and raw["target_date"].iloc[0] == pd.Timestamp("2026-01-01")
    assert b"31 Mar 2026 16:45" in path.read_bytes()


def test_spss_keeps_labels_and_missing(tmp_path: Path) -> None:
    frame, meta = pyreadstat.read_sav(write_dataset("sav", sample(), tmp_path, as_of=AS_OF), user_missing=True)
    assert meta.column_names_to_labels["score"] == "Score"
    assert meta.variable_value_labels["status"] == {"completed": "Completed", "missed": "Missed"}
    assert frame["score"].tolist()[1] == AWKWARD[1]


def test_parquet_types_labels_and_values(tmp_path: Path) -> None:
    table = pq.read_table(write_dataset("parquet", sample(), tmp_path))
    assert str(table.schema.field("completed_at").type) == "timestamp[ms, tz=UTC]"  # Parquet has no seconds
    meta = table.schema.field("status").metadata
    assert json.loads(meta[b"value_labels"])["missed"]["zh_Hans"] == "缺失" and meta[b"xpt_name"] == b"STATUS"
    assert table["score"].to_pylist()[1] == AWKWARD[1]


def test_xlsx_numbers_read_back_bit_for_bit_and_text_stays_text(tmp_path: Path) -> None:
    rows = [("=1+1", "completed", v, 3, dt.date(2026, 1, 1), AS_OF, True) for v in AWKWARD]
    rows.append(("#N/A", None, None, None, None, None, None))
    data = Dataset("sample", bi("Sample", "样例"), COLUMNS, table_of(COLUMNS, rows))
    book = load_workbook(write_dataset("xlsx", data, tmp_path, as_of=AS_OF), read_only=True)
    assert book.sheetnames == ["sample", "variables"]
    values = list(book["sample"].iter_rows(values_only=True))
    assert values[0] == tuple(c.name for c in COLUMNS)
    for row, expected in zip(values[1:], AWKWARD):
        assert struct.pack(">d", row[2]) == struct.pack(">d", expected)
    assert values[1][0] == "=1+1" and values[-1][0] == "#N/A" and values[-1][2] is None
    assert values[1][4] == dt.datetime(2026, 1, 1) and values[1][5] == dt.datetime(2026, 3, 31, 16, 45, 10)
    assert values[1][6] is True
    variables = list(book["variables"].iter_rows(values_only=True))
    assert variables[2][:3] == ("status", "STATUS", "string")
    frame = pd.read_excel(tmp_path / "sample.xlsx", sheet_name="sample")
    assert frame["score"].tolist()[0] == AWKWARD[0]


def test_xlsx_continues_past_the_row_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qol_app.export.writers import xlsx

    monkeypatch.setattr(xlsx, "MAX_DATA_ROWS", 4)
    book = load_workbook(write_dataset("xlsx", sample(), tmp_path), read_only=True)
    assert book.sheetnames == ["sample", "sample (2)", "sample (3)", "variables"]
    rows = [r for name in book.sheetnames[:3] for r in list(book[name].iter_rows(values_only=True))[1:]]
    assert [r[0] for r in rows] == [f"S01-{n:03d}" for n in range(len(AWKWARD))] + ["S01-999", "S01-998"]


def test_csv_reads_back_with_missing_as_empty(tmp_path: Path) -> None:
    text = write_dataset("csv", sample(), tmp_path).read_bytes().decode("utf-8")
    assert "\r\n" in text and not text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[1]["score"] == repr(AWKWARD[1]) and rows[0]["score"] == ""
    assert rows[1]["completed_at"] == "2026-01-02T04:04:05Z" and rows[0]["is_baseline"] == "1"
    assert rows[-2]["status"] == "" and float(rows[2]["score"]) == AWKWARD[2]


def test_same_data_gives_identical_bytes_and_unknown_formats_fail(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for fmt in WRITERS:
        first = write_dataset(fmt, sample(), tmp_path / "a", as_of=AS_OF)
        second = write_dataset(fmt, sample(), tmp_path / "b", as_of=AS_OF)
        assert first.read_bytes() == second.read_bytes(), fmt
    with pytest.raises(KeyError, match="unknown export format"):
        write_dataset("pdf", sample(), tmp_path)


def test_empty_and_all_missing_datasets_write_everywhere(tmp_path: Path) -> None:
    empty = Dataset("empty", bi("Empty", "空"), COLUMNS, table_of(COLUMNS, []))
    blank = Dataset("blank", bi("Blank", "空白"), COLUMNS, table_of(COLUMNS, [(None,) * len(COLUMNS)] * 2))
    for dataset in (empty, blank):
        for fmt in WRITERS:
            assert write_dataset(fmt, dataset, tmp_path).stat().st_size > 0


def test_dictionary_lists_both_names_and_numeric_codes() -> None:
    rows = data_dictionary([sample()]).table.to_pylist()
    patid = next(r for r in rows if r["variable"] == "patient_id")
    assert (patid["xpt_name"], patid["xpt_dataset"]) == ("PATID", "SAMPLE")
    missed = next(r for r in rows if r["variable"] == "status" and r["code"] == "missed")
    assert missed["numeric_code"] == 2 and missed["code_label_zh_hans"] == "缺失"


def _files(tmp_path: Path) -> list[Path]:
    return [write_dataset(fmt, sample(), tmp_path, as_of=AS_OF) for fmt in ("csv", "parquet", "sav")]


def _manifest(entries: list[dict]) -> dict:
    return build_manifest(
        entries,
        app_version="0.1.0",
        scoring_version="1.0.0",
        instrument_versions={"qlq_c30": "3.0"},
        filters={"sites": ["S01"]},
        as_of=AS_OF,
    )


def test_manifest_and_zip_are_deterministic(tmp_path: Path) -> None:
    files = _files(tmp_path)
    first, manifest = write_zip(files, _manifest, tmp_path / "one.zip", AS_OF)
    assert manifest == _manifest(file_entries(files))  # hashed as zipped = hashed on disk
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256((tmp_path / entry["name"]).read_bytes()).hexdigest()
        assert entry["bytes"] == (tmp_path / entry["name"]).stat().st_size
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    try:
        second, _ = write_zip(list(reversed(files)), _manifest, tmp_path / "two.zip", AS_OF)
    finally:
        os.environ.pop("TZ") if previous is None else os.environ.__setitem__("TZ", previous)
        time.tzset()
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert archive.testzip() is None  # every CRC right (the entries are deflated by ISA-L)
        assert archive.namelist() == sorted(["sample.csv", "sample.parquet", "sample.sav", MANIFEST_NAME])
        assert {i.date_time for i in archive.infolist()} == {(2026, 3, 31, 16, 45, 10)}
        assert archive.getinfo("sample.parquet").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("sample.csv").compress_type == zipfile.ZIP_DEFLATED
        assert json.loads(archive.read(MANIFEST_NAME)) == manifest
        for entry in manifest["files"]:  # the manifest vouches for the bytes in the zip
            assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]


def test_zip_refuses_a_manifest_that_does_not_list_the_files(tmp_path: Path) -> None:
    files = _files(tmp_path)
    with pytest.raises(ValueError, match="does not list the files"):
        write_zip(files, lambda entries: _manifest(entries[1:]), tmp_path / "export.zip", AS_OF)
    with pytest.raises(ValueError, match="must be unique"):
        write_zip([*files, files[0]], _manifest, tmp_path / "export.zip", AS_OF)
    assert not (tmp_path / "export.zip").exists()
    assert not list(tmp_path.glob(".export.zip.*"))  # no half-written zip left


def test_a_file_that_cannot_be_zipped_fails_the_zip_and_leaves_nothing(tmp_path: Path) -> None:
    from qol_app.export.manifest import Zipper

    files = _files(tmp_path)
    target = tmp_path / "out" / "export.zip"
    target.parent.mkdir()
    with pytest.raises(FileNotFoundError), Zipper(target, AS_OF) as zipper:
        zipper.add(files[0])
        zipper.add(tmp_path / "gone.csv")  # the worker's error is raised by finish
        zipper.add(files[1])
        zipper.finish(_manifest)
    assert list(target.parent.iterdir()) == []  # neither the zip nor its temporary file


def test_zip_entries_are_in_the_order_added_and_listed_by_name(tmp_path: Path) -> None:
    from qol_app.export.manifest import Zipper

    files = _files(tmp_path)  # csv, parquet, sav
    with Zipper(tmp_path / "export.zip", AS_OF) as zipper:
        for path in reversed(files):
            zipper.add(path)
        path, manifest = zipper.finish(_manifest)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == sorted(["sample.csv", "sample.parquet", "sample.sav", MANIFEST_NAME])
        offsets = {i.filename: i.header_offset for i in archive.infolist()}
    assert sorted(offsets, key=offsets.get) == ["sample.sav", "sample.parquet", "sample.csv", MANIFEST_NAME]
    assert [e["name"] for e in manifest["files"]] == ["sample.csv", "sample.parquet", "sample.sav"]


def test_zip_entries_are_deflated_by_isal_at_level_1(tmp_path: Path) -> None:
    from isal import isal_zlib

    from qol_app.export.writers._zip import DEFLATE_LEVEL, FixedTimeZipFile, fixed_info

    payload = b"".join(b"row %d;value %d\n" % (n, n % 7) for n in range(20_000))
    expected = isal_zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -15)
    raw = expected.compress(payload) + expected.flush()
    path = tmp_path / "entry.zip"
    with FixedTimeZipFile(path, date_time=(2026, 1, 1, 0, 0, 0)) as archive:
        with archive.open(fixed_info("data.txt", archive.fixed_date_time), "w") as entry:
            entry.write(payload)
        archive.writestr("small.txt", b"abc" * 100)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("data.txt")
        assert archive.read("data.txt") == payload and archive.read("small.txt") == b"abc" * 100
        assert info.compress_size == len(raw)
        with path.open("rb") as handle:  # the entry's data is ISA-L's stream, byte for byte
            handle.seek(info.header_offset + 26)
            skip = struct.unpack("<HH", handle.read(4))
            handle.seek(info.header_offset + 30 + sum(skip))
            assert handle.read(info.compress_size) == raw


def test_spss_and_stata_hold_chinese_and_long_text(tmp_path: Path) -> None:
    long = "长文本 " + "x" * 300 + " 结束"  # over SPSS's 255-byte string: written in segments
    rows = [("甲-001", "completed", 1.5, 1, None, None, False), (long, None, None, None, None, None, None)]
    data = Dataset("wide", bi("Chinese and long text", "中文与长文本"), COLUMNS, table_of(COLUMNS, rows))
    frame, meta = pyreadstat.read_sav(write_dataset("sav", data, tmp_path, locale="zh_Hans"))
    assert frame["patient_id"].tolist() == ["甲-001", long] and meta.file_label == "中文与长文本"
    assert meta.column_names == [c.name for c in COLUMNS]
    stata = pd.read_stata(write_dataset("dta", data, tmp_path, locale="zh_Hans"))
    assert stata["patient_id"].tolist() == ["甲-001", long] and stata["status"].tolist()[0] == "已完成"
