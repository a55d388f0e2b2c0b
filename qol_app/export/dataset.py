"""Self-describing tabular datasets that every export writer understands.

A `Dataset` is a schema (typed, bilingually labelled `Column`s) plus a one-shot
iterator of row tuples. Writers stream the rows, so an export never holds the
whole table in memory (see writers/).

Naming rule (checked here, once, so every writer can rely on it): a column name
is 1-32 ASCII letters, digits or underscores, starting with a letter and not
ending with an underscore, and is not a reserved word in SAS, Stata or SPSS.
32 is the common ceiling of SAS (32), Stata (32) and SPSS (64). Names of at
most 8 characters also fit SAS transport version 5 (see writers/xpt.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from typing import Any, Literal, TypeVar, get_args

ColumnType = Literal["string", "integer", "float", "date", "datetime", "boolean"]
COLUMN_TYPES: frozenset[str] = frozenset(get_args(ColumnType))

Locale = str
LOCALES: tuple[Locale, ...] = ("en", "zh_Hans")
"""Every label exists in each of these: English for staff and sponsor, Simplified Chinese for sites."""

Code = int | str
LabelText = Mapping[Locale, str]

MAX_NAME_LENGTH = 32
MAX_LABEL_CHARS = 80  # Stata's variable and dataset label limit
MAX_VALUE_LABEL_BYTES = 120  # SPSS value label limit, in UTF-8 bytes

_NAME_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$")
_RESERVED = frozenset(
    (
        # SPSS keywords, then Stata reserved names (compared case-insensitively).
        "all",
        "and",
        "by",
        "eq",
        "ge",
        "gt",
        "le",
        "lt",
        "ne",
        "not",
        "or",
        "to",
        "with",
        "byte",
        "double",
        "float",
        "if",
        "in",
        "int",
        "long",
        "strl",
        "using",
    )
)

BOOLEAN_VALUE_LABELS: Mapping[Code, LabelText] = {
    0: {"en": "No", "zh_Hans": "否"},
    1: {"en": "Yes", "zh_Hans": "是"},
}
"""Booleans are 0/1 outside Parquet and Excel; these labels travel with them to Stata and SPSS."""


def check_name(name: str, *, what: str = "column") -> str:
    """Return `name` if SAS, Stata and SPSS all accept it, else raise ValueError."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise ValueError(
            f"{what} name {name!r}: use 1-{MAX_NAME_LENGTH} ASCII letters, digits or '_', "
            "starting with a letter and not ending with '_'"
        )
    lowered = name.lower()
    if lowered in _RESERVED or re.fullmatch(r"str\d+", lowered):
        raise ValueError(f"{what} name {name!r} is a reserved word in SAS, Stata or SPSS")
    return name


def _check_label(text: LabelText, where: str, *, max_chars: int = MAX_LABEL_CHARS) -> None:
    for locale in LOCALES:
        value = text.get(locale)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: missing {locale!r} label")
        if len(value) > max_chars:
            raise ValueError(f"{where}: {locale!r} label longer than {max_chars} characters")


@dataclass(frozen=True)
class Column:
    """One variable: its name, storage type, labels in every locale and optional code labels."""

    name: str
    type: ColumnType
    label: LabelText
    value_labels: Mapping[Code, LabelText] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}")
        _check_label(self.label, f"column {self.name!r}")
        if self.value_labels is None:
            return
        code_type: type = {"integer": int, "string": str}.get(self.type, type(None))
        if code_type is type(None):
            raise ValueError(f"column {self.name!r}: value labels need an integer or string column")
        for code, text in self.value_labels.items():
            if type(code) is not code_type:
                raise ValueError(f"column {self.name!r}: code {code!r} is not {self.type}")
            _check_label(text, f"column {self.name!r} code {code!r}")
            for locale in LOCALES:
                if len(text[locale].encode("utf-8")) > MAX_VALUE_LABEL_BYTES:
                    raise ValueError(
                        f"column {self.name!r} code {code!r}: {locale!r} label over "
                        f"{MAX_VALUE_LABEL_BYTES} UTF-8 bytes (SPSS limit)"
                    )

    def label_for(self, locale: Locale) -> str:
        """The variable label in `locale`."""
        return self.label[locale]

    def codes_for(self, locale: Locale) -> dict[Code, str] | None:
        """Code -> label in `locale`; booleans get 0/1 = No/Yes; None when nothing to label."""
        source = BOOLEAN_VALUE_LABELS if self.type == "boolean" else self.value_labels
        if source is None:
            return None
        return {code: text[locale] for code, text in source.items()}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named table: schema plus rows (tuples in column order; may be a one-shot generator).

    ``batches``, when given, is the same table as Arrow record batches (one-shot too), for builders
    that compute it column-wise: the CSV and Parquet writers then use them instead of ``rows``.
    """

    name: str
    label: LabelText
    columns: tuple[Column, ...]
    rows: Iterable[tuple[Any, ...]] = field(repr=False)
    batches: Iterable[Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_name(self.name, what="dataset")
        _check_label(self.label, f"dataset {self.name!r}")
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns:
            raise ValueError(f"dataset {self.name!r} has no columns")
        seen: set[str] = set()
        for column in self.columns:
            key = column.name.lower()  # SAS and SPSS names are case-insensitive
            if key in seen:
                raise ValueError(f"dataset {self.name!r}: duplicate column {column.name!r}")
            seen.add(key)

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]


# --- row checking --------------------------------------------------------------------------


def _checker(column: Column) -> Callable[[Any], Any]:
    """A function validating one cell of `column` (None always allowed) and normalising it."""

    def fail(value: Any, expected: str) -> Any:
        raise ValueError(f"column {column.name!r}: expected {expected}, got {value!r}")

    def string(v: Any) -> Any:
        return v if v is None or type(v) is str else fail(v, "str")

    def integer(v: Any) -> Any:
        return v if v is None or type(v) is int else fail(v, "int")

    def floating(v: Any) -> Any:
        if v is None:
            return None
        if type(v) not in (float, int) or not math.isfinite(v):
            return fail(v, "a finite float (missing is None, never NaN)")
        return float(v)

    def day(v: Any) -> Any:
        return v if v is None or type(v) is date else fail(v, "datetime.date")

    def moment(v: Any) -> Any:
        if v is None:
            return None
        if not isinstance(v, datetime) or v.utcoffset() is None:
            return fail(v, "a timezone-aware datetime")
        return v.astimezone(UTC)

    def boolean(v: Any) -> Any:
        return v if v is None or type(v) is bool else fail(v, "bool")

    return {
        "string": string,
        "integer": integer,
        "float": floating,
        "date": day,
        "datetime": moment,
        "boolean": boolean,
    }[column.type]


CHECK_BATCH = 5_000
"""Rows checked together, column by column (see `checked_columns`)."""

_NONE = type(None)
_PLAIN_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str, _NONE}),
    "integer": frozenset({int, _NONE}),
    "float": frozenset({float, _NONE}),
    "date": frozenset({date, _NONE}),
    "datetime": frozenset({datetime, _NONE}),
    "boolean": frozenset({bool, _NONE}),
}


def _fast_column(kind: str, values: Sequence[Any]) -> bool:
    """True when every value of a column batch is already valid and normalised (the common case)."""
    if not set(map(type, values)) <= _PLAIN_TYPES[kind]:
        return False
    if kind == "float":
        return all(map(math.isfinite, filter(None, values)))
    if kind == "datetime":
        return all(v.tzinfo is UTC for v in values if v is not None)
    return True


def checked_columns(dataset: Dataset, size: int = CHECK_BATCH) -> Iterator[tuple[int, list[Sequence[Any]]]]:
    """Yield (row count, columns) per batch of up to `size` rows, checked like `checked_rows`.

    Checks run column by column over a batch, which is several times faster than cell by cell;
    a batch with any value needing conversion or failing a check goes through the per-cell path,
    so results and error messages (first bad row, in row order) are exactly those of `checked_rows`.
    """
    checkers = [_checker(c) for c in dataset.columns]
    kinds = [c.type for c in dataset.columns]
    width = len(checkers)
    done = 0
    for chunk in batched(dataset.rows, size):
        columns: list[Sequence[Any]] | None = None
        if set(map(len, chunk)) == {width}:
            columns = list(zip(*chunk)) if chunk else []
            if not all(_fast_column(kind, values) for kind, values in zip(kinds, columns)):
                columns = None
        if columns is None:
            checked = []
            for number, row in enumerate(chunk, start=done + 1):
                if len(row) != width:
                    raise ValueError(f"{dataset.name} row {number}: {len(row)} values for {width} columns")
                try:
                    checked.append(tuple(check(value) for check, value in zip(checkers, row)))
                except ValueError as exc:
                    raise ValueError(f"{dataset.name} row {number}: {exc}") from None
            columns = list(zip(*checked))
        done += len(chunk)
        yield len(chunk), columns


def checked_rows(dataset: Dataset) -> Iterator[tuple[Any, ...]]:
    """Yield the dataset's rows, type-checked; floats as float, datetimes converted to UTC.

    Checking here, lazily, means a bad value fails the export with its row number instead of
    producing a file that a statistics package silently misreads.
    """
    for _count, columns in checked_columns(dataset):
        yield from zip(*columns)


T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` items (itertools.batched arrived only in Python 3.12)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- data dictionary -----------------------------------------------------------------------


def _bilingual(en: str, zh: str) -> LabelText:
    return {"en": en, "zh_Hans": zh}


DICTIONARY_COLUMNS: tuple[Column, ...] = (
    Column("dataset", "string", _bilingual("Dataset", "数据集")),
    Column("variable", "string", _bilingual("Variable name", "变量名")),
    Column("position", "integer", _bilingual("Position in dataset", "变量顺序")),
    Column("type", "string", _bilingual("Storage type", "存储类型")),
    Column("label_en", "string", _bilingual("Label (English)", "标签（英文）")),
    Column("label_zh_hans", "string", _bilingual("Label (Simplified Chinese)", "标签（简体中文）")),
    Column("description", "string", _bilingual("Description", "说明")),
    Column("code", "string", _bilingual("Code (empty on the variable's own row)", "编码（变量行为空）")),
    Column("code_label_en", "string", _bilingual("Code label (English)", "编码标签（英文）")),
    Column("code_label_zh_hans", "string", _bilingual("Code label (Simplified Chinese)", "编码标签（简体中文）")),
)


def _dictionary_rows(datasets: Sequence[Dataset]) -> Iterator[tuple[Any, ...]]:
    for dataset in datasets:
        for position, column in enumerate(dataset.columns, start=1):
            yield (
                dataset.name,
                column.name,
                position,
                column.type,
                column.label["en"],
                column.label["zh_Hans"],
                column.description or None,
                None,
                None,
                None,
            )
            codes = BOOLEAN_VALUE_LABELS if column.type == "boolean" else column.value_labels or {}
            for code, text in codes.items():
                yield (
                    dataset.name,
                    column.name,
                    position,
                    column.type,
                    None,
                    None,
                    None,
                    str(code),
                    text["en"],
                    text["zh_Hans"],
                )


def data_dictionary(datasets: Iterable[Dataset]) -> Dataset:
    """A dataset describing every column (type, labels in both languages) and every code.

    One row per variable, then one row per labelled code of that variable. Only the schemas are
    read, never the rows, so it can be built before or after the data files are written.
    """
    schemas = list(datasets)
    return Dataset(
        name="data_dictionary",
        label=_bilingual("Data dictionary", "数据字典"),
        columns=DICTIONARY_COLUMNS,
        rows=_dictionary_rows(schemas),
    )


# --- the long scored file (ARCHITECTURE.md, contract 3) -------------------------------------

STATUS_LABELS: Mapping[Code, LabelText] = {
    "completed": _bilingual("Completed", "已完成"),
    "partial": _bilingual("Partially completed", "部分完成"),
    "missed": _bilingual("Missed", "缺失"),
    "not_expected": _bilingual("Not expected", "无需填写"),
}
RESPONDENT_LABELS: Mapping[Code, LabelText] = {
    "self": _bilingual("Patient", "患者本人"),
    "self_assisted": _bilingual("Patient, with help", "患者本人（他人协助）"),
    "proxy": _bilingual("Proxy (caregiver)", "代答者（照护者）"),
}
MODE_LABELS: Mapping[Code, LabelText] = {
    "web": _bilingual("Web, own device", "网页（本人设备）"),
    "site_tablet": _bilingual("Site tablet", "研究中心平板"),
    "interview": _bilingual("Interview", "访谈"),
    "paper_transcribed": _bilingual("Paper, transcribed", "纸质问卷转录"),
}
MISSING_REASON_LABELS: Mapping[Code, LabelText] = {
    "too_ill": _bilingual("Too ill", "病情过重"),
    "hospitalised": _bilingual("Hospitalised", "住院"),
    "cognitive_impairment": _bilingual("Cognitive impairment", "认知障碍"),
    "refused": _bilingual("Refused", "拒绝"),
    "technical": _bilingual("Technical problem", "技术问题"),
    "forgot": _bilingual("Forgot", "遗忘"),
    "site_error": _bilingual("Site error", "研究中心失误"),
    "other": _bilingual("Other", "其他"),
}
ARM_LABELS: Mapping[Code, LabelText] = {
    "A": _bilingual("Intrathecal + systemic chemotherapy", "鞘内化疗 + 全身化疗"),
    "B": _bilingual("Systemic chemotherapy alone", "单纯全身化疗"),
}

LONG_SCORED_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "string", _bilingual("Pseudonymous study ID", "研究编号（假名）")),
    Column("site", "string", _bilingual("Site", "研究中心")),
    Column("arm", "string", _bilingual("Randomised arm", "随机分组"), ARM_LABELS),
    Column("timepoint", "string", _bilingual("Timepoint", "评估时间点")),
    Column("instrument", "string", _bilingual("Instrument", "量表")),
    Column("instrument_version", "string", _bilingual("Instrument version", "量表版本")),
    Column(
        "scale",
        "string",
        _bilingual("Scale code", "维度代码"),
        description="Scale codes of CLINICAL.md section 4, e.g. QL2, PF2, SUMSC, BNFU.",
    ),
    Column(
        "score",
        "float",
        _bilingual("Score (0-100; EQ-5D index or VAS)", "得分（0-100；EQ-5D 指数或 VAS）"),
        description="Full precision; empty when the scale cannot be scored (never 0).",
    ),
    Column("n_items", "integer", _bilingual("Items answered for the scale", "该维度已答条目数")),
    Column("target_date", "date", _bilingual("Target date (site local)", "目标日期（中心当地）")),
    Column("completed_at", "datetime", _bilingual("Completed at (UTC)", "完成时间（UTC）")),
    Column("status", "string", _bilingual("Form status", "问卷状态"), STATUS_LABELS),
    Column("respondent", "string", _bilingual("Respondent", "填写人"), RESPONDENT_LABELS),
    Column("mode", "string", _bilingual("Mode of administration", "填写方式"), MODE_LABELS),
    Column("language", "string", _bilingual("Language of the form", "问卷语言")),
    Column("missing_reason", "string", _bilingual("Reason form is missing", "缺失原因"), MISSING_REASON_LABELS),
)
"""Columns of the long scored file: one row per (patient, timepoint, instrument, scale).

Contract 3 names the required columns; `instrument_version` and `language` are recorded for
every form (CLINICAL.md section 3) and travel with the scores so analyses can stratify by them.
"""


def long_scored_dataset(rows: Iterable[tuple[Any, ...]]) -> Dataset:
    """Wrap rows in LONG_SCORED_COLUMNS order as the `qol_long` dataset."""
    return Dataset(
        name="qol_long",
        label=_bilingual(
            "QoL scores, one row per patient, timepoint and scale", "生活质量得分（每位患者、时间点、维度一行）"
        ),
        columns=LONG_SCORED_COLUMNS,
        rows=rows,
    )
