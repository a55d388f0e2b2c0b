"""Import programs shipped in every zip with CSV files: a SAS program and an R script that read
each CSV with its declared types, lengths, labels and missing values, so nothing is guessed
(PROC IMPORT's 20-row guess truncates text; R's guess turns codes into numbers).

Both are generated from the same schemas as the files: a column's type decides how it is read
(text, number, ISO date, ISO instant in UTC, 1/0 boolean), the data dictionary's labels become
variable labels, code lists become SAS formats and R ``labels`` attributes. An empty cell is
missing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qol_app.export.schema import Column, Dataset


def text_widths(dataset: Dataset) -> dict[str, int]:
    """Longest UTF-8 text per text column (at least 1), for SAS lengths."""
    return {name: max(1, longest) for name, (longest, _ascii) in dataset.text_stats().items()}


def _sas_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _format_name(column: Column) -> str:
    return f"${column.name[:26]}_f"


def sas_program(datasets: Sequence[Dataset], widths: Mapping[str, Mapping[str, int]]) -> str:
    """A SAS program reading ``<name>.csv`` for each dataset into WORK (run in a UTF-8 session)."""
    lines = [
        "/* Reads the CSV files of this export with their declared types, lengths and labels.",
        "   Run SAS with -encoding utf8 (the files are UTF-8) from the unzipped folder, or set DIR. */",
        "%let dir = .;",
        "",
        "proc format;",
    ]
    formats: dict[str, Column] = {}
    for dataset in datasets:
        for column in dataset.columns:
            if column.type == "string" and column.value_labels:
                formats.setdefault(_format_name(column), column)
    for name, column in formats.items():
        pairs = " ".join(
            f"{_sas_text(str(code))}={_sas_text(text['en'])}" for code, text in (column.value_labels or {}).items()
        )
        lines.append(f"  value {name} {pairs};")
    lines += ["run;", ""]
    for dataset in datasets:
        width = widths.get(dataset.name, {})
        lines.append(f"data work.{dataset.name} (label={_sas_text(dataset.label['en'])});")
        lines.append(
            f'  infile "&dir./{dataset.name}.csv" dsd firstobs=2 lrecl=1000000 encoding="utf-8" termstr=crlf missover;'
        )
        lengths, informats, outformats, labels = [], [], [], []
        for column in dataset.columns:
            if column.type == "string":
                lengths.append(f"{column.name} ${width.get(column.name, 1)}")
                if column.value_labels:
                    outformats.append(f"{column.name} {_format_name(column)}.")
            else:
                lengths.append(f"{column.name} 8")
            if column.type == "date":
                informats.append(f"{column.name} yymmdd10.")
                outformats.append(f"{column.name} date9.")
            elif column.type == "datetime":
                informats.append(f"{column.name} e8601dz20.")
                outformats.append(f"{column.name} datetime20.")
            labels.append(f"{column.name}={_sas_text(column.label['en'])}")
        lines.append("  length " + " ".join(lengths) + ";")
        if informats:
            lines.append("  informat " + " ".join(informats) + ";")
        if outformats:
            lines.append("  format " + " ".join(outformats) + ";")
        lines.append(
            "  input " + " ".join(c.name + (" $" if c.type == "string" else "") for c in dataset.columns) + ";"
        )
        lines.append("  label " + " ".join(labels) + ";")
        lines += ["run;", ""]
    return "\n".join(lines) + "\n"


_R_CLASSES = {
    "string": "character",
    "integer": "integer",
    "float": "numeric",
    "date": "character",
    "datetime": "character",
    "boolean": "integer",
}


def _r_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def r_script(datasets: Sequence[Dataset]) -> str:
    """An R script (base R only) reading ``<name>.csv`` for each dataset into a data frame."""
    lines = [
        "# Reads the CSV files of this export with their declared types and labels (base R only).",
        "# Run from the unzipped folder, or set dir. Each dataset becomes a data frame of that name.",
        'dir <- "."',
        "read_qol <- function(name, classes, dates, instants, logicals, labels, codes) {",
        '  d <- utils::read.csv(file.path(dir, paste0(name, ".csv")), colClasses = classes,',
        '                       na.strings = "", fileEncoding = "UTF-8", check.names = FALSE)',
        "  for (v in dates) d[[v]] <- as.Date(d[[v]])",
        '  for (v in instants) d[[v]] <- as.POSIXct(d[[v]], format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC")',
        "  for (v in logicals) d[[v]] <- as.logical(d[[v]])",
        '  for (v in names(labels)) attr(d[[v]], "label") <- labels[[v]]',
        '  for (v in names(codes)) attr(d[[v]], "labels") <- codes[[v]]',
        "  d",
        "}",
        "",
    ]
    for dataset in datasets:
        classes = ", ".join(f"{c.name} = {_r_text(_R_CLASSES[c.type])}" for c in dataset.columns)
        names = {kind: [c.name for c in dataset.columns if c.type == kind] for kind in ("date", "datetime", "boolean")}
        labels = ", ".join(f"{c.name} = {_r_text(c.label['en'])}" for c in dataset.columns)
        codes = []
        for column in dataset.columns:
            if column.type == "string" and column.value_labels:
                pairs = ", ".join(f"{_r_text(t['en'])} = {_r_text(str(k))}" for k, t in column.value_labels.items())
                codes.append(f"{column.name} = c({pairs})")
        lines.append(f"{dataset.name} <- read_qol({_r_text(dataset.name)},")
        lines.append(f"  classes = c({classes}),")
        for arg, kind in (("dates", "date"), ("instants", "datetime"), ("logicals", "boolean")):
            lines.append(f"  {arg} = c({', '.join(_r_text(n) for n in names[kind])}),")
        lines.append(f"  labels = list({labels}),")
        lines.append(f"  codes = list({', '.join(codes)}))")
        lines.append("")
    return "\n".join(lines)
