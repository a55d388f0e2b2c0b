"""Excel workbook (Office Open XML, .xlsx): one data sheet per dataset, continued on further
sheets past Excel's row limit, and a "variables" sheet.

The sheet XML is generated column by column with Arrow (each cell's XML text computed for a whole
column at once, then rows joined), because a cell-by-cell writer (openpyxl) spent over a minute on
the long file of a large trial. The package is the minimal one Excel, LibreOffice, openpyxl and
pandas read: content types, relationships, workbook, styles (a date and a date-time format),
shared strings, sheets, document properties.

Cells: numbers in shortest round-trip form, so they read back bit for bit; dates and instants as
Excel serial dates with a date / date-time format (instants as UTC wall time: Excel has no time
zones; the labels say UTC); booleans as TRUE/FALSE; text always as (shared) text, so "=1+1" or
"#N/A" never becomes a formula or an error cell; missing values are empty cells. Line breaks
become LF; control characters that XML cannot hold become U+FFFD. A sheet holds at most 1,048,575
data rows: the rest continue on "<name> (2)", "<name> (3)", ... with the same header, frozen.

Reproducible bytes: document properties and every zip entry carry the as-of time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.schema import Column, Dataset
from qol_app.export.writers._zip import FixedTimeZipFile, fixed_info, zip_time
from qol_app.export.writers.base import ROW_BATCH, WriteOptions, Writer, naive_utc

MAX_DATA_ROWS = 1_048_575
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
STYLE_DATE, STYLE_DATETIME = 1, 2
_XML_ROWS = 10_000


def _letters(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, rest = divmod(n - 1, 26)
        out = chr(65 + rest) + out
    return out


def _xml_text(text: str) -> str:
    return escape(_ILLEGAL.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n")))


def sheet_names(dataset: Dataset) -> list[str]:
    """The data sheets the dataset fills (at least one)."""
    count = max(1, -(-dataset.num_rows // MAX_DATA_ROWS))
    base = dataset.name[:26]
    return [base] + [f"{base} ({n})" for n in range(2, count + 1)]


class _Strings:
    """The shared-string table: every distinct text, numbered in first-seen order."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def numbers(self, values: pa.Array) -> pa.Array:
        """Each text's number in the table (null stays null)."""
        encoded = values.dictionary_encode() if not pa.types.is_dictionary(values.type) else values
        mapping = []
        for text in encoded.dictionary.to_pylist():
            if text not in self.index:
                self.index[text] = len(self.values)
                self.values.append(text)
            mapping.append(self.index[text])
        return pa.array(mapping, pa.int64()).take(encoded.indices)

    def xml(self) -> bytes:
        items = "".join(f'<si><t xml:space="preserve">{_xml_text(v)}</t></si>' for v in self.values)
        count = len(self.values)
        return f'{_HEAD}<sst xmlns="{_MAIN}" count="{count}" uniqueCount="{count}">{items}</sst>'.encode()


def _cells(column: Column, values: pa.Array, letters: str, numbers: pa.Array, tails: dict[str, pa.Array]) -> pa.Array:
    """Each row's cell XML for one column (null: no cell), the cell reference made of the column's
    ``letters`` and the row ``numbers``; text already as shared-string numbers. ``tails`` keeps,
    per cell kind, the row numbers joined with the attributes that follow them (made once for
    all the columns of a block of rows)."""
    if column.type == "string":
        body, attrs = values.cast(pa.string()), '" t="s"><v>'
    elif column.type == "boolean":
        body, attrs = values.cast(pa.int8()).cast(pa.string()), '" t="b"><v>'
    elif column.type == "date":
        days = pc.subtract(values.cast(pa.int32()), (_EXCEL_EPOCH - dt.date(1970, 1, 1)).days)
        body, attrs = days.cast(pa.string()), f'" s="{STYLE_DATE}"><v>'
    elif column.type == "datetime":
        seconds = values.cast(pa.int64()).cast(pa.float64())
        serial = pc.add(pc.divide(seconds, 86400.0), float((dt.date(1970, 1, 1) - _EXCEL_EPOCH).days))
        body, attrs = serial.cast(pa.string()), f'" s="{STYLE_DATETIME}"><v>'
    else:
        body, attrs = values.cast(pa.string()), '"><v>'
    if attrs not in tails:
        tails[attrs] = pc.binary_join_element_wise(numbers, attrs, "")
    return pc.binary_join_element_wise(
        f'<c r="{letters}', tails[attrs], body, "</v></c>", "", null_handling="emit_null"
    )


def _joined(values: pa.Array) -> memoryview | bytes:
    """All the texts of a (null-free) string array, concatenated (a view of Arrow's buffer)."""
    if not len(values):
        return b""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    return memoryview(values.buffers()[2])[offsets[0] : offsets[-1]]


def _sheet_rows(
    columns: Sequence[Column], batches: Iterable[pa.RecordBatch], first_row: int, strings: _Strings
) -> Iterator[memoryview | bytes]:
    """The <row> elements of the batches' rows, numbered from ``first_row``: the shared strings
    are numbered a whole batch at a time (column by column), the XML made _XML_ROWS at a time."""
    for batch in batches:
        values = [
            strings.numbers(batch.column(n)) if column.type == "string" else batch.column(n)
            for n, column in enumerate(columns)
        ]
        for start in range(0, batch.num_rows, _XML_ROWS):
            count = min(_XML_ROWS, batch.num_rows - start)
            numbers = pa.array(np.arange(first_row, first_row + count), pa.int64()).cast(pa.string())
            first_row += count
            tails: dict[str, pa.Array] = {}
            cells = [
                _cells(column, values[n].slice(start, count), _letters(n), numbers, tails)
                for n, column in enumerate(columns)
            ]
            del tails
            # one join makes the rows: a missing cell (null) is left out
            rows = pc.binary_join_element_wise(
                '<row r="', numbers, '">', *cells, "</row>", "", null_handling="replace", null_replacement=""
            )
            del cells  # hold one copy of the XML at a time
            yield _joined(rows)
            del rows


def _sheet(
    columns: Sequence[Column], batches: Iterable[pa.RecordBatch], num_rows: int, strings: _Strings
) -> Iterator[memoryview | bytes]:
    header = pa.table({c.name: pa.array([c.name]) for c in columns})
    text_columns = [Column(c.name, "string", c.label, xpt=c.xpt, xpt_label=c.xpt_label) for c in columns]
    last = f"{_letters(len(columns) - 1)}{num_rows + 1}"
    head = (
        f'{_HEAD}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}"><dimension ref="A1:{last}"/>'
        '<sheetViews><sheetView workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/></sheetView></sheetViews>'
        "<sheetData>"
    ).encode()
    yield head
    yield from _sheet_rows(text_columns, header.to_batches(), 1, strings)
    yield from _sheet_rows(columns, batches, 2, strings)
    yield b"</sheetData></worksheet>"


def _sheet_parts(batches: Iterator[pa.RecordBatch], total: int) -> Iterator[tuple[int, Iterator[pa.RecordBatch]]]:
    """(rows, batches) of each data sheet: the dataset's batches, cut where a sheet ends."""
    carry: list[pa.RecordBatch] = []

    def sheet(rows: int) -> Iterator[pa.RecordBatch]:
        left = rows
        while left:
            batch = carry.pop() if carry else next(batches)
            if batch.num_rows > left:
                carry.append(batch.slice(left))
                batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch

    for start in range(0, max(total, 1), MAX_DATA_ROWS):
        yield min(MAX_DATA_ROWS, total - start), sheet(min(MAX_DATA_ROWS, total - start))


def _write_entry(book: FixedTimeZipFile, name: str, chunks: Iterable[memoryview | bytes]) -> None:
    info = fixed_info(name, book.fixed_date_time)
    with book.open(info, "w", force_zip64=True) as entry:
        for chunk in chunks:
            entry.write(chunk)


def _variables(dataset: Dataset, options: WriteOptions) -> tuple[list[Column], pa.Table]:
    from qol_app.export.schema import bi

    columns = [Column(name, "string", bi(name, name)) for name in ("variable", "xpt_name", "type", "label", "values")]
    rows = []
    for column in dataset.columns:
        codes = column.codes_for(options.locale) or {}
        values = "; ".join(f"{code} = {label}" for code, label in codes.items()) or None
        rows.append([column.name, column.xpt, column.type, column.label_for(options.locale), values])
    data = list(zip(*rows))
    return columns, pa.table({c.name: pa.array(list(v), pa.string()) for c, v in zip(columns, data)})


def _styles() -> bytes:
    return (
        f'{_HEAD}<styleSheet xmlns="{_MAIN}"><numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
        '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>'
        "</fill></fills>"
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        '<cellXfs count="3"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
    ).encode()


def write(dataset: Dataset, path: Path, options: WriteOptions) -> None:
    """Write `dataset` into a workbook at `path`."""
    names = sheet_names(dataset) + ["variables"]
    strings = _Strings()
    stamp = naive_utc(options.as_of)
    when = stamp.isoformat() + "Z"
    sheets_xml = "".join(
        f'<sheet name="{escape(name)}" sheetId="{n}" r:id="rId{n}"/>' for n, name in enumerate(names, start=1)
    )
    sheet_types = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for n in range(1, len(names) + 1)
    )
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, len(names) + 1)
    )
    n_sheets = len(names)
    with FixedTimeZipFile(path, date_time=zip_time(stamp)) as book:
        book.writestr(
            "[Content_Types].xml",
            f'{_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f"{sheet_types}"
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/></Types>',
        )
        book.writestr(
            "_rels/.rels",
            f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{_REL}/extended-properties" Target="docProps/app.xml"/></Relationships>',
        )
        book.writestr(
            "docProps/core.xml",
            f'{_HEAD}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/'
            'core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<dc:title>{_xml_text(dataset.label[options.locale])}</dc:title><dc:creator>qol_app</dc:creator>"
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{when}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{when}</dcterms:modified></cp:coreProperties>',
        )
        book.writestr(
            "docProps/app.xml",
            f'{_HEAD}<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
            "<Application>qol_app</Application></Properties>",
        )
        book.writestr(
            "xl/workbook.xml",
            f'{_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>{sheets_xml}</sheets></workbook>',
        )
        book.writestr(
            "xl/_rels/workbook.xml.rels",
            f'{_HEAD}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}'
            f'<Relationship Id="rId{n_sheets + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
            f'<Relationship Id="rId{n_sheets + 2}" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
        )
        book.writestr("xl/styles.xml", _styles())
        parts = _sheet_parts(dataset.batches(ROW_BATCH), dataset.num_rows)
        for n, (rows, batches) in enumerate(parts, start=1):
            _write_entry(book, f"xl/worksheets/sheet{n}.xml", _sheet(dataset.columns, batches, rows, strings))
        columns, table = _variables(dataset, options)
        _write_entry(
            book, f"xl/worksheets/sheet{n_sheets}.xml", _sheet(columns, table.to_batches(), table.num_rows, strings)
        )
        book.writestr("xl/sharedStrings.xml", strings.xml())


WRITER = Writer(format_id="xlsx", extension="xlsx", write=write)
