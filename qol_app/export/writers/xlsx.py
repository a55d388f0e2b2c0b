"""Excel workbook via openpyxl's write-only mode: rows stream to disk, one sheet per dataset.

Memory stays flat (openpyxl writes text as inline strings, so no shared-string table grows),
but it is the slowest writer: about 30 s per 200k rows of 8 columns.

Sheet 1 holds the data (header = column names, frozen); sheet "variables" lists each column's
type, label and code labels in the chosen locale. Datetimes are written as UTC wall time (Excel
has no timezones; the labels say UTC). Text is always stored as text, so a value like "=1+1"
or "#N/A" never becomes a formula or an error cell. Line breaks become LF (XML readers turn
CR LF into LF anyway, and Excel breaks lines on LF); other control characters, which XML cannot
hold, become U+FFFD. A sheet holds at most 1,048,575 data rows; more raise ValueError.

Reproducible bytes: document properties `created`/`modified` are set to the as-of time and
every zip entry gets that same timestamp (openpyxl would otherwise use the current time).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qol_app.export.dataset import Dataset, checked_rows
from qol_app.export.writers._zip import FixedTimeZipFile, zip_time
from qol_app.export.writers.base import WriteOptions, Writer, naive_utc

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


def _variables_rows(dataset: Dataset, options: WriteOptions) -> list[list[Any]]:
    rows: list[list[Any]] = [["variable", "type", "label", "values"]]
    for column in dataset.columns:
        codes = column.codes_for(options.locale) or {}
        values = "; ".join(f"{code} = {text}" for code, text in codes.items())
        rows.append([column.name, column.type, column.label_for(options.locale), values or None])
    return rows


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Stream `dataset` into a two-sheet workbook at `path`."""
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
    sheet = book.create_sheet(dataset.name[:31])
    sheet.freeze_panes = "A2"
    text = _text_cell(sheet)
    kinds = [c.type for c in dataset.columns]
    sheet.append(dataset.names)
    for number, row in enumerate(checked_rows(dataset), start=1):
        if number > MAX_DATA_ROWS:
            raise ValueError(f"{dataset.name}: more than {MAX_DATA_ROWS} rows do not fit one Excel sheet")
        sheet.append(
            [
                None
                if value is None
                else text(value)
                if kind == "string"
                else naive_utc(value)
                if kind == "datetime"
                else value
                for kind, value in zip(kinds, row)
            ]
        )
    variables = book.create_sheet("variables")
    for line in _variables_rows(dataset, options):
        variables.append([text(v) if isinstance(v, str) else v for v in line])


def _discard(book: Any) -> None:
    """Close and delete the temp files openpyxl keeps per write-only sheet until the book is saved."""
    for sheet in book.worksheets:
        with contextlib.suppress(Exception):
            if not sheet.closed:
                sheet.close()
            sheet._writer.cleanup()  # no public API removes the sheet's temp file


WRITER = Writer(format_id="xlsx", extension="xlsx", streams=True, write=write)
