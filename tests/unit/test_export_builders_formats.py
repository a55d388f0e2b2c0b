"""The export datasets round-trip through every file format: values, types, variable and value labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyreadstat
import pytest
from openpyxl import load_workbook

from qol_app.export import WRITERS, data_dictionary, write_dataset
from qol_app.export.builders import columns as cols
from qol_app.export.builders.tables import form_rows, item_rows, long_rows, wide_layout, wide_rows
from qol_app.export.dataset import Dataset
from tests.unit.test_export_builders import AS_OF, CATALOG, OPTS, REG, sample_forms

READERS = {"xpt": pyreadstat.read_xport, "dta": pyreadstat.read_dta, "sav": pyreadstat.read_sav}


def long_dataset() -> Dataset:
    return Dataset(
        "qol_long",
        {"en": "QoL scores", "zh_Hans": "生活质量得分"},
        cols.LONG_COLUMNS,
        list(long_rows([sample_forms()], CATALOG, OPTS)),
    )


def expected() -> pd.DataFrame:
    dataset = long_dataset()
    return pd.DataFrame([dict(zip(dataset.names, row)) for row in dataset.rows])


def missing(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def same(a, b) -> bool:
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, (bool, int, float)) and not isinstance(a, str):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)
    return str(a) == str(b)


CHECKED = [
    "patient_id",
    "timepoint",
    "instrument",
    "scale",
    "score",
    "n_items",
    "status",
    "missing_reason",
    "target_day",
    "baseline_score",
    "change",
    "deteriorated",
    "is_baseline",
]


def check_values(frame: pd.DataFrame) -> None:
    want = expected()
    assert list(frame.columns) == list(want.columns)
    assert len(frame) == len(want)
    for name in CHECKED:
        for got, exp in zip(frame[name].tolist(), want[name].tolist()):
            assert same(got, exp), (name, got, exp)


def test_csv(tmp_path: Path) -> None:
    frame = pd.read_csv(
        write_dataset("csv", long_dataset(), tmp_path), dtype={"patient_id": str}, keep_default_na=False, na_values=[""]
    )
    check_values(frame)
    assert frame["score"].dtype == "float64" and frame["target_day"].dtype == "int64"


def test_parquet_types_and_labels(tmp_path: Path) -> None:
    table = pq.read_table(write_dataset("parquet", long_dataset(), tmp_path))
    types = {f.name: str(f.type) for f in table.schema}
    assert types["score"] == "double" and types["n_items"] == "int64" and types["deteriorated"] == "bool"
    assert types["target_date"] == "date32[day]" and types["completed_at"] == "timestamp[us, tz=UTC]"
    status = table.schema.field("status").metadata
    assert status[b"label_zh_Hans"].decode() == "问卷状态"
    assert json.loads(status[b"value_labels"])["pending"]["en"].startswith("Pending")
    check_values(table.to_pandas())


@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
def test_xlsx(tmp_path: Path, locale: str) -> None:
    path = write_dataset("xlsx", long_dataset(), tmp_path, locale=locale, as_of=AS_OF)
    check_values(pd.read_excel(path, sheet_name="qol_long", dtype={"patient_id": str}))
    variables = {r[0]: r for r in load_workbook(path)["variables"].iter_rows(values_only=True)}
    assert variables["missing_reason"][2] == ("缺失原因" if locale == "zh_Hans" else "Reason form is missing")
    assert ("died = 无需填写：死亡" if locale == "zh_Hans" else "died = Not expected: died") in variables[
        "missing_reason"
    ][3]


@pytest.mark.parametrize("fmt", ["dta", "sav"])
@pytest.mark.parametrize("locale", ["en", "zh_Hans"])
def test_stata_and_spss_labels(tmp_path: Path, fmt: str, locale: str) -> None:
    path = write_dataset(fmt, long_dataset(), tmp_path, locale=locale, as_of=AS_OF)
    frame, meta = READERS[fmt](path)
    check_values(frame)
    labels = meta.column_names_to_labels
    assert labels["baseline_score"] == ("该维度基线得分" if locale == "zh_Hans" else "Baseline score of the scale")
    assert meta.variable_value_labels["deteriorated"] == (
        {0: "否", 1: "是"} if locale == "zh_Hans" else {0: "No", 1: "Yes"}
    )
    if fmt == "sav":  # SPSS labels string codes too; Stata cannot (the dictionary has them)
        assert meta.variable_value_labels["status"]["missed"] == ("缺失" if locale == "zh_Hans" else "Missed")
        assert meta.variable_value_labels["missing_reason"]["died"].endswith("died" if locale == "en" else "死亡")


def test_xpt_keeps_values_and_english_labels(tmp_path: Path) -> None:
    frame, meta = pyreadstat.read_xport(write_dataset("xpt", long_dataset(), tmp_path, locale="zh_Hans"))
    check_values(frame)
    assert meta.column_names_to_labels["status"] == "Form status"


def test_every_dataset_writes_in_every_format(tmp_path: Path) -> None:
    layout = wide_layout(sorted(REG), CATALOG)
    makers = {
        "qol_wide": lambda: Dataset(
            "qol_wide", {"en": "w", "zh_Hans": "w"}, layout.columns, wide_rows([sample_forms()], layout, CATALOG, OPTS)
        ),
        "items": lambda: Dataset(
            "items", {"en": "i", "zh_Hans": "i"}, cols.ITEM_COLUMNS, item_rows([sample_forms()], CATALOG, OPTS)
        ),
        "forms": lambda: Dataset(
            "forms", {"en": "f", "zh_Hans": "f"}, cols.FORMS_COLUMNS, form_rows([sample_forms()], CATALOG, OPTS)
        ),
    }
    for fmt in WRITERS:
        for name, make in makers.items():
            path = write_dataset(fmt, make(), tmp_path, as_of=AS_OF)
            assert path.name == f"{name}.{WRITERS[fmt].extension}"
    wide, meta = pyreadstat.read_sav(tmp_path / "qol_wide.sav")
    assert wide["C30_QL2"].iloc[0] == 100.0 and meta.column_names_to_labels["C30_QL2"].startswith("C30 ")
    items, _ = pyreadstat.read_dta(tmp_path / "items.dta")
    assert set(items["item_status"]) == {"answered", "skipped", "not_presented"}
    forms = pd.read_parquet(tmp_path / "forms.parquet")
    assert forms.loc[forms["status"] == "missed", "missing_reason"].tolist() == ["too_ill"]


def test_dictionary_describes_every_column_with_codes_in_both_languages(tmp_path: Path) -> None:
    dictionary = data_dictionary([long_dataset()])
    frame = pd.read_csv(write_dataset("csv", dictionary, tmp_path), keep_default_na=False)
    variables = frame[frame["code"] == ""]
    assert variables["variable"].tolist() == [c.name for c in cols.LONG_COLUMNS]
    codes = frame[(frame["variable"] == "status") & (frame["code"] != "")]
    assert set(codes["code"]) == {"completed", "partial", "missed", "not_expected", "pending"}
    assert (codes["code_label_zh_hans"] != "").all()
    status = variables[variables["variable"] == "status"].iloc[0]
    assert "Cancelled timepoints" in status["description"]
