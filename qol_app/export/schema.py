"""Self-describing datasets that every export writer understands: typed, labelled columns plus
one Arrow table, built once per export and handed to every writer.

Names (checked here once, so every writer can rely on them):
- a column name is 1-32 ASCII letters, digits or underscores, starting with a letter, not ending
  with an underscore, and not a reserved word of SAS, Stata or SPSS (32 is their common ceiling);
- every column and dataset also has a SAS transport (XPT version 5) name of at most 8 upper-case
  characters, unique in its dataset, and an English label of at most 40 ASCII characters. Names
  of at most 8 characters are their own XPT name; longer ones carry an explicit ``xpt`` name (the
  mapping is part of the schema, so it is stable, and the data dictionary lists both names).
"""

from __future__ import annotations

import itertools
import json
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

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
XPT_NAME = 8
XPT_LABEL = 40
ROW_BATCH = 50_000
"""Rows a writer takes at once: batches start at multiples of this (one Parquet row group)."""

_NAME_RE = re.compile(r"^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$")
_XPT_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,7}$")
_RESERVED = frozenset(
    # SPSS keywords, then Stata reserved names (compared case-insensitively).
    ["all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"]
    + ["byte", "double", "float", "if", "in", "int", "long", "strl", "using"]
)

BOOLEAN_VALUE_LABELS: Mapping[Code, LabelText] = {
    0: {"en": "No", "zh_Hans": "否"},
    1: {"en": "Yes", "zh_Hans": "是"},
}
"""Booleans are 0/1 outside Parquet and Excel; these labels travel with them to Stata and SPSS."""

ARROW_TYPES: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("s", tz="UTC"),
    "boolean": pa.bool_(),
}
"""Storage of each column type. Instants are kept to the second (UTC) in every format."""


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


def check_xpt_name(name: str, *, what: str) -> str:
    if not _XPT_NAME_RE.match(name):
        raise ValueError(f"{what}: XPT name {name!r} must be 1-8 characters A-Z, 0-9 or _, not starting with a digit")
    return name


def check_xpt_label(text: str, *, what: str) -> str:
    if not text or len(text) > XPT_LABEL or not text.isascii():
        raise ValueError(f"{what}: XPT label {text!r} must be 1-{XPT_LABEL} ASCII characters")
    return text


def _check_label(text: LabelText, where: str, *, max_chars: int = MAX_LABEL_CHARS) -> None:
    for locale in LOCALES:
        value = text.get(locale)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: missing {locale!r} label")
        if len(value) > max_chars:
            raise ValueError(f"{where}: {locale!r} label longer than {max_chars} characters")


@dataclass(frozen=True)
class Column:
    """One variable: name, storage type, labels in every locale, optional code labels, and its XPT
    name and label (derived from ``name`` and the English label when those already fit)."""

    name: str
    type: ColumnType
    label: LabelText
    value_labels: Mapping[Code, LabelText] | None = None
    description: str = ""
    xpt: str = ""  # empty: derived in __post_init__ (so always set afterwards)
    xpt_label: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}")
        _check_label(self.label, f"column {self.name!r}")
        if not self.xpt:
            if len(self.name) > XPT_NAME:
                raise ValueError(f"column {self.name!r}: longer than 8 characters, so it needs an explicit XPT name")
            object.__setattr__(self, "xpt", self.name.upper())
        check_xpt_name(self.xpt, what=f"column {self.name!r}")
        if not self.xpt_label:
            object.__setattr__(self, "xpt_label", self.label["en"])
        check_xpt_label(self.xpt_label, what=f"column {self.name!r}")
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

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


def _text_stats(table: pa.Table | pa.RecordBatch, names: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """Per text column: (longest UTF-8 text in bytes, 0 when none; every text ASCII)."""
    out = {}
    for name in names:
        values = table.column(name)
        longest = pc.max(pc.binary_length(values)).as_py() if len(values) else None
        ascii_only = pc.all(pc.string_is_ascii(values)).as_py() if len(values) else None
        out[name] = (longest or 0, ascii_only is not False)
    return out


class Spool:
    """The rows of a large dataset, appended a part at a time to an anonymous temporary Arrow IPC
    file and read back a batch at a time, so that no writer needs the whole table in memory.

    It keeps what the writers must know before their first row: the row count and, per text
    column, the longest text in bytes and whether every text is ASCII."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self.schema = pa.schema([(c.name, c.arrow_type) for c in self.columns])
        self._file = tempfile.TemporaryFile(prefix="qol-export-")  # noqa: SIM115 - closed by close()
        self._writer: ipc.RecordBatchFileWriter | None = ipc.new_file(self._file, self.schema)
        self.num_rows = 0
        self._texts = [c.name for c in self.columns if c.type == "string"]
        self._floats = [c.name for c in self.columns if c.type == "float"]
        self.text_stats: dict[str, tuple[int, bool]] = {name: (0, True) for name in self._texts}

    def append(self, table: pa.Table) -> None:
        """Add rows (a table with exactly the spool's schema; missing floats are null, never NaN)."""
        if self._writer is None:
            raise ValueError("the spool is closed for appending")
        if not table.schema.equals(self.schema):
            raise ValueError(f"part schema {table.schema} is not {self.schema}")
        if not table.num_rows:
            return
        for name in self._floats:
            if pc.any(pc.is_nan(table[name])).as_py():
                raise ValueError(f"column {name!r} holds NaN (missing is null)")
        for name, (longest, ascii_only) in _text_stats(table, self._texts).items():
            before = self.text_stats[name]
            self.text_stats[name] = (max(before[0], longest), before[1] and ascii_only)
        self._writer.write_table(table)
        self.num_rows += table.num_rows

    def finish(self) -> Spool:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self

    def parts(self) -> Iterator[pa.RecordBatch]:
        """The appended parts, in order, read from the file one at a time."""
        self.finish()
        self._file.seek(0)
        reader = ipc.open_file(pa.PythonFile(self._file, mode="r"))
        for n in range(reader.num_record_batches):
            yield reader.get_batch(n)

    def close(self) -> None:
        self._writer = None
        self._file.close()


def aligned_batches(
    parts: Iterable[pa.RecordBatch], schema: pa.Schema, size: int = ROW_BATCH
) -> Iterator[pa.RecordBatch]:
    """Contiguous batches of ``size`` rows (the last one shorter) from parts of any length."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for part in parts:
        while part.num_rows:
            take = min(size - count, part.num_rows)
            pending.append(part.slice(0, take))
            count += take
            part = part.slice(take)
            if count == size:
                yield pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches()[0]
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches()[0]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A named, labelled table. ``table`` has exactly ``columns`` (names and Arrow types).

    ``xpt_drop`` names columns holding Chinese text that SAS transport files leave out (XPT is
    ASCII only; the data dictionary and manifest say so)."""

    name: str
    label: LabelText
    columns: tuple[Column, ...]
    table: pa.Table = field(repr=False)
    xpt: str = ""  # empty: derived in __post_init__ (so always set afterwards)
    xpt_label: str = ""
    xpt_drop: tuple[str, ...] = ()
    spool: Spool | None = field(default=None, repr=False)
    """When set, the rows are in the spool and ``table`` is empty (the schema only)."""

    def __post_init__(self) -> None:
        check_name(self.name, what="dataset")
        _check_label(self.label, f"dataset {self.name!r}")
        object.__setattr__(self, "columns", tuple(self.columns))
        if not self.columns:
            raise ValueError(f"dataset {self.name!r} has no columns")
        object.__setattr__(self, "xpt", check_xpt_name(self.xpt or self.name.upper(), what=f"dataset {self.name!r}"))
        object.__setattr__(
            self, "xpt_label", check_xpt_label(self.xpt_label or self.label["en"], what=f"dataset {self.name!r}")
        )
        seen: set[str] = set()
        short: set[str] = set()
        for column in self.columns:
            key = column.name.lower()  # SAS and SPSS names are case-insensitive
            if key in seen:
                raise ValueError(f"dataset {self.name!r}: duplicate column {column.name!r}")
            if column.xpt in short:
                raise ValueError(f"dataset {self.name!r}: XPT name {column.xpt!r} used twice")
            seen.add(key)
            short.add(column.xpt)
        expected = pa.schema([(c.name, c.arrow_type) for c in self.columns])
        if not self.table.schema.remove_metadata().equals(expected):
            raise ValueError(f"dataset {self.name!r}: table schema {self.table.schema} is not {expected}")
        for column in self.columns:
            if column.type == "float" and len(self.table) and pc.any(pc.is_nan(self.table[column.name])).as_py():
                raise ValueError(f"dataset {self.name!r}: column {column.name!r} holds NaN (missing is null)")
        for name in self.xpt_drop:
            if name not in seen:
                raise ValueError(f"dataset {self.name!r}: xpt_drop names unknown column {name!r}")
        if self.spool is not None:
            if self.table.num_rows or not self.spool.schema.equals(expected):
                raise ValueError(f"dataset {self.name!r}: a spooled dataset's table holds its schema only")
            self.spool.finish()

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    @property
    def num_rows(self) -> int:
        return self.spool.num_rows if self.spool is not None else self.table.num_rows

    def batches(self, size: int = ROW_BATCH) -> Iterator[pa.RecordBatch]:
        """The rows as contiguous record batches of ``size`` rows, starting at row 0, the last one
        shorter (what every writer consumes; a spooled dataset is read from its file)."""
        if self.spool is None:
            parts: Iterable[pa.RecordBatch] = self.table.to_batches()
        else:
            parts = self.spool.parts()
        schema = self.table.schema
        yield from aligned_batches(parts, schema, size)

    def column(self, name: str) -> pa.ChunkedArray:
        """One column, whole (read from the spool when spooled)."""
        if self.spool is None:
            return self.table[name]
        chunks = [part.column(name) for part in self.spool.parts()]
        return pa.chunked_array(chunks, type=self.table.schema.field(name).type)

    def text_stats(self) -> dict[str, tuple[int, bool]]:
        """Per text column: (longest text in UTF-8 bytes, 0 when none or empty; every text ASCII)."""
        if self.spool is not None:
            return dict(self.spool.text_stats)
        return _text_stats(self.table, [c.name for c in self.columns if c.type == "string"])

    def schema_only(self) -> Dataset:
        """This dataset without its rows (for the data dictionary and import programs)."""
        return replace(self, table=self.table.slice(0, 0), spool=None)

    def xpt_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.name not in self.xpt_drop)


def bi(en: str, zh: str) -> LabelText:
    return {"en": en, "zh_Hans": zh}


def table_of(columns: Sequence[Column], rows: Iterable[Sequence[Any]], batch: int = 50_000) -> pa.Table:
    """A table of ``columns`` from row tuples (values already of the columns' types; None = missing),
    converted ``batch`` rows at a time so that Python tuples never hold a large table."""
    names = [c.name for c in columns]
    parts: list[pa.RecordBatch] = []
    iterator = iter(rows)
    while True:
        chunk = list(itertools.islice(iterator, batch))
        if not chunk and parts:
            break
        data = list(zip(*chunk)) if chunk else [()] * len(columns)
        parts.append(columns_table(columns, dict(zip(names, data))))
        if len(chunk) < batch:
            break
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def columns_table(columns: Sequence[Column], data: Mapping[str, Any]) -> pa.Table:
    """A table of ``columns`` from column name -> values (a sequence or an Arrow array)."""
    arrays = []
    for column in columns:
        values = data[column.name]
        if isinstance(values, pa.ChunkedArray | pa.Array):
            arrays.append(values.cast(column.arrow_type))
        else:
            arrays.append(pa.array(values, column.arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([(c.name, c.arrow_type) for c in columns]))


def dataset_metadata(dataset: Dataset) -> pa.Schema:
    """The table's schema with labels, descriptions and code labels as field metadata (Parquet)."""

    def dumps(value: object) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    fields = []
    for column in dataset.columns:
        meta = {f"label_{locale}": text for locale, text in column.label.items()}
        meta["description"] = column.description
        meta["xpt_name"] = column.xpt or ""
        if column.value_labels:
            meta["value_labels"] = dumps({str(k): dict(v) for k, v in column.value_labels.items()})
        fields.append(
            pa.field(column.name, column.arrow_type, metadata={k.encode(): v.encode() for k, v in sorted(meta.items())})
        )
    return pa.schema(
        fields, metadata={b"qol.dataset": dataset.name.encode(), b"qol.label": dumps(dict(dataset.label)).encode()}
    )


# --- data dictionary -----------------------------------------------------------------------

DICTIONARY_COLUMNS: tuple[Column, ...] = (
    Column("dataset", "string", bi("Dataset", "数据集"), xpt="DATASET"),
    Column("xpt_dataset", "string", bi("Dataset name in SAS transport", "SAS传输文件中的数据集名"), xpt="XPTDS"),
    Column("variable", "string", bi("Variable name", "变量名"), xpt="VARIABLE"),
    Column("xpt_name", "string", bi("Variable name in SAS transport", "SAS传输文件中的变量名"), xpt="XPTNAME"),
    Column("position", "integer", bi("Position in dataset", "变量顺序"), xpt="POSITION"),
    Column("type", "string", bi("Storage type", "存储类型")),
    Column("label_en", "string", bi("Label (English)", "标签（英文）"), xpt="LABELEN"),
    Column("label_zh_hans", "string", bi("Label (Simplified Chinese)", "标签（简体中文）"), xpt="LABELZH"),
    Column("xpt_label", "string", bi("Label in SAS transport", "SAS传输文件中的标签"), xpt="XPTLABEL"),
    Column("description", "string", bi("Description", "说明"), xpt="DESCRIBE"),
    Column("code", "string", bi("Code (empty on the variable's own row)", "编码（变量行为空）"), xpt_label="Code"),
    Column(
        "numeric_code",
        "integer",
        bi("Numeric code in Stata files", "Stata文件中的数值编码"),
        xpt="NUMCODE",
        description="Coded text variables are stored in Stata as these integers with value labels.",
    ),
    Column("code_label_en", "string", bi("Code label (English)", "编码标签（英文）"), xpt="CODELBEN"),
    Column(
        "code_label_zh_hans", "string", bi("Code label (Simplified Chinese)", "编码标签（简体中文）"), xpt="CODELBZH"
    ),
)


def numeric_codes(column: Column) -> dict[Code, int] | None:
    """Code -> the integer Stata stores for it (1, 2, ... in the order the codes are listed), for
    coded text columns; None for other columns."""
    if column.type != "string" or not column.value_labels:
        return None
    return {code: n for n, code in enumerate(column.value_labels, start=1)}


def data_dictionary(datasets: Iterable[Dataset]) -> Dataset:
    """A dataset describing every column (names, type, labels in both languages) and every code.

    One row per variable, then one row per labelled code of that variable. Only schemas are read.
    """
    rows: list[tuple[Any, ...]] = []
    for dataset in datasets:
        for position, column in enumerate(dataset.columns, start=1):
            head = (dataset.name, dataset.xpt, column.name, column.xpt, position, column.type)
            rows.append(
                head
                + (column.label["en"], column.label["zh_Hans"], column.xpt_label, column.description or None)
                + (None, None, None, None)
            )
            codes = BOOLEAN_VALUE_LABELS if column.type == "boolean" else column.value_labels or {}
            numbers = numeric_codes(column) or {}
            for code, text in codes.items():
                rows.append(
                    head
                    + (None, None, None, None)
                    + (
                        str(code),
                        numbers.get(code, code if isinstance(code, int) else None),
                        text["en"],
                        text["zh_Hans"],
                    )
                )
    return Dataset(
        name="data_dictionary",
        label=bi("Data dictionary", "数据字典"),
        columns=DICTIONARY_COLUMNS,
        table=table_of(DICTIONARY_COLUMNS, rows),
        xpt="DATADICT",
        xpt_drop=("label_zh_hans", "code_label_zh_hans", "description"),  # Chinese; descriptions over 200 bytes
    )
