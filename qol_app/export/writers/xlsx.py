"""Excel workbook via openpyxl's write-only mode: one data sheet per dataset (continued on
further sheets past Excel's row limit) and a "variables" sheet.

Header = column names, frozen. Numbers are written in shortest round-trip form, so they read back
bit for bit; dates and instants as Excel dates (instants as UTC wall time: Excel has no time
zones; the labels say UTC); booleans as TRUE/FALSE. Text is always stored as text, so "=1+1" or
"#N/A" never becomes a formula or an error cell. Line breaks become LF; other control
characters, which XML cannot hold, become U+FFFD. A sheet holds at most 1,048,575 data rows: the
rest continue on "<name> (2)", "<name> (3)", ... with the same header.

Reproducible bytes: document properties `created`/`modified` are the as-of time and every zip
entry gets that same timestamp (openpyxl would otherwise use the current time).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qol_app.export.schema import Dataset
from qol_app.export.writers._zip import FixedTimeZipFile, zip_time
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer, naive_utc

MAX_DATA_ROWS = 1_048_575
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ERROR_CODES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"})


def _text_cell(sheet: Any) -> Callable[[str], Any]:
    from openpyxl.cell import WriteOnlyCell

    def cell(value: str) -> Any:
        value = _ILLEGAL.sub("\ufffd", value.replace("\r\n", "\n").replace("\r", "\n"))
        if value.startswith("=") or value in _ERROR_CODES:
            literal = WriteOnlyCell(sheet, value)
            literal.data_type = "s"  # openpyxl infers a formula/error from the text otherwise
            return literal
        return value

    return cell


def sheet_names(dataset: Dataset) -> list[str]:
    """The data sheets the dataset fills (at least one)."""
    count = max(1, -(-dataset.num_rows // MAX_DATA_ROWS))
    base = dataset.name[:26]
    return [base] + [f"{base} ({n})" for n in range(2, count + 1)]


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` into a workbook at `path`."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    book = Workbook(write_only=True)
    stamp = naive_utc(options.as_of)
    book.properties.created = stamp
    book.properties.modified = stamp
    book.properties.creator = "qol_app"
    book.properties.title = dataset.label[options.locale]
    try:
        _fill(book, dataset, options)
    except BaseException:
        _discard(book)
        raise
    # ExcelWriter directly, not Workbook.save: save_workbook overwrites `modified` with now().
    ExcelWriter(book, FixedTimeZipFile(path, date_time=zip_time(stamp))).save()


def _fill(book: Any, dataset: Dataset, options: WriteOptions) -> None:
    kinds = [c.type for c in dataset.columns]
    names = sheet_names(dataset)
    sheet = None
    text = None
    row_number = 0
    for batch in dataset.table.to_batches(ROW_BATCH):
        columns = [batch.column(n).to_pylist() for n in range(batch.num_columns)]
        for n, kind in enumerate(kinds):
            if kind == "datetime":
                columns[n] = [None if v is None else naive_utc(v) for v in columns[n]]
        for row in zip(*columns):
            if row_number % MAX_DATA_ROWS == 0:
                sheet = book.create_sheet(names[row_number // MAX_DATA_ROWS])
                sheet.freeze_panes = "A2"
                text = _text_cell(sheet)
                sheet.append(dataset.names)
            row_number += 1
            sheet.append([text(v) if type(v) is str else v for v in row])  # type: ignore[misc,union-attr]
    if sheet is None:
        sheet = book.create_sheet(names[0])
        sheet.freeze_panes = "A2"
        sheet.append(dataset.names)
    variables = book.create_sheet("variables")
    text = _text_cell(variables)
    variables.append(["variable", "xpt_name", "type", "label", "values"])
    for column in dataset.columns:
        codes = column.codes_for(options.locale) or {}
        values = "; ".join(f"{code} = {label}" for code, label in codes.items())
        line = [column.name, column.xpt, column.type, column.label_for(options.locale), values or None]
        variables.append([text(v) if isinstance(v, str) else v for v in line])


def _discard(book: Any) -> None:
    """Close and delete the temp files openpyxl keeps per write-only sheet until the book is saved."""
    for sheet in book.worksheets:
        with contextlib.suppress(Exception):
            if not sheet.closed:
                sheet.close()
            sheet._writer.cleanup()  # no public API removes the sheet's temp file


WRITER = Writer(format_id="xlsx", extension="xlsx", write=write)
