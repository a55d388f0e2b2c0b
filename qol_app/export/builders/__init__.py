"""Export datasets built from the database as of a point in time, streamed.

    spec = ExportSpec(filters=ExportFilters(sites=("S01",)), as_of=as_of)
    write_dataset("csv", scores_long(session, spec), out_dir)

Each function returns a `Dataset` whose rows are a one-shot generator reading the database
lazily (so call it once per file). Layers: ``source`` reads rows as of the as-of time into plain
records, ``tables``/``standards`` turn records into rows (pure), ``columns`` holds the schemas.
``qol_long`` also carries Arrow batches computed column-wise (``columnar``), which CSV and Parquet
write directly: the same table, several times faster at a million rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from qol_app.export.builders import columns as cols
from qol_app.export.builders.records import ExportFilters, PatientForms
from qol_app.export.builders.source import (
    DEFAULT_BATCH,
    DEFAULT_CHUNK_PATIENTS,
    iter_alerts,
    iter_long_chunks,
    iter_patient_forms,
    iter_patients,
)
from qol_app.export.builders.standards import qs_export, write_fhir_bundle
from qol_app.export.builders.tables import (
    BuildOptions,
    Catalog,
    alert_rows,
    counted,
    counted_batches,
    event_rows,
    form_rows,
    item_code_rows,
    item_rows,
    long_rows,
    ordered_instruments,
    patient_rows,
    wide_layout,
    wide_rows,
)
from qol_app.export.dataset import LOCALES, MAX_LABEL_CHARS, Column, Dataset
from qol_app.instruments import Registry, get_registry

Progress = Callable[[str, int, bool], None]
"""progress(dataset name, rows so far, finished?)"""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What to export and how: filters, as-of time, ISO dates (already authorised), threshold."""

    filters: ExportFilters
    as_of: dt.datetime
    iso_dates: bool = False
    threshold: float = 10.0
    baseline_key: str = "baseline"
    batch: int = DEFAULT_BATCH
    chunk_patients: int = DEFAULT_CHUNK_PATIENTS
    registry: Registry | None = None
    progress: Progress | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        unknown = sorted(set(self.filters.instruments) - set(self.reg))
        if unknown:
            raise ValueError(f"unknown instruments: {', '.join(unknown)}")

    @property
    def reg(self) -> Registry:
        return self.registry or get_registry()

    @property
    def instruments(self) -> tuple[str, ...]:
        """Selected instruments (all registered ones when the filter is empty), in export order."""
        return ordered_instruments(self.filters.instruments or tuple(self.reg))

    @property
    def options(self) -> BuildOptions:
        return BuildOptions(self.as_of, self.iso_dates, self.threshold, self.baseline_key)

    def catalog(self) -> Catalog:
        return Catalog(self.reg, self.threshold)

    def labelled(self, columns: tuple[Column, ...]) -> tuple[Column, ...]:
        """``columns`` with the selected instruments' names and scale names as code labels."""
        instruments: dict[str, dict[str, str]] = {}
        scales: dict[str, dict[str, str]] = {}
        for inst in self.instruments:
            instrument = self.reg.get(inst)
            instruments[inst] = dict(instrument.name)
            for scale in instrument.scales:
                names = scales.setdefault(scale.code, {loc: scale.name[loc] for loc in LOCALES})
                if names["en"] != scale.name["en"]:  # the same code in two instruments: say both
                    for loc in LOCALES:
                        names[loc] = f"{names[loc]} / {scale.name[loc]}"[:MAX_LABEL_CHARS]
        codes = {"instrument": instruments, "scale": scales}
        return tuple(dataclasses.replace(c, value_labels=codes[c.name]) if codes.get(c.name) else c for c in columns)

    def forms(self, session: Session, *, scores: bool = True, answers: bool = False):
        return iter_patient_forms(
            session,
            self.filters,
            self.as_of,
            instruments=self.instruments,
            baseline_key=self.baseline_key,
            scores=scores,
            answers=answers,
            batch=self.batch,
        )

    def _report(self, name: str) -> Callable[[int, bool], None] | None:
        progress = self.progress
        return None if progress is None else (lambda n, done: progress(name, n, done))

    def rows(self, name: str, rows):
        return counted(rows, 50_000, self._report(name))

    def batches(self, name: str, batches):
        return counted_batches(batches, 50_000, self._report(name))


def _bi(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh_Hans": zh}


def scores_long(session: Session, spec: ExportSpec) -> Dataset:
    """(a) qol_long: one row per patient x timepoint x instrument x scale, every expected form.

    Rows (``tables.long_rows``) for the formats that need them; the same table as Arrow batches
    (``columnar.long_batches``) for CSV and Parquet. Whichever a writer takes is read lazily.
    """
    rows = long_rows(spec.forms(session), spec.catalog(), spec.options)
    return Dataset(
        "qol_long",
        _bi("QoL scores, one row per patient, timepoint and scale", "生活质量得分（每位患者、时间点、维度一行）"),
        spec.labelled(cols.LONG_COLUMNS),
        spec.rows("qol_long", rows),
        batches=spec.batches("qol_long", _long_batches(session, spec)),
    )


def _long_batches(session: Session, spec: ExportSpec) -> Iterator[Any]:
    """Imports pyarrow only when a writer asks for the batches."""
    from qol_app.export.builders.columnar import long_batches

    chunks = iter_long_chunks(
        session,
        spec.filters,
        spec.as_of,
        instruments=spec.instruments,
        baseline_key=spec.baseline_key,
        patients_per_chunk=spec.chunk_patients,
    )
    yield from long_batches(chunks, cols.LONG_COLUMNS, spec.catalog(), spec.options, spec.filters, spec.instruments)


def scores_wide(session: Session, spec: ExportSpec) -> Dataset:
    """(b) qol_wide: one row per patient x timepoint, <P>_STATUS and <P>_<SCALE> columns."""
    catalog = spec.catalog()
    layout = wide_layout(spec.instruments, catalog)
    rows = wide_rows(spec.forms(session), layout, catalog, spec.options)
    return Dataset(
        "qol_wide",
        _bi("QoL scores, one row per patient and timepoint", "生活质量得分（每位患者、时间点一行）"),
        layout.columns,
        spec.rows("qol_wide", rows),
    )


def item_responses(session: Session, spec: ExportSpec) -> Dataset:
    """(c) items: item answers, long, with explicit skip codes."""
    rows = item_rows(spec.forms(session, scores=False, answers=True), spec.catalog(), spec.options)
    return Dataset(
        "items",
        _bi("Item responses with skip codes", "条目回答（含跳过编码）"),
        spec.labelled(cols.ITEM_COLUMNS),
        spec.rows("items", rows),
    )


def expected_forms(session: Session, spec: ExportSpec) -> Dataset:
    """(d) forms: every expected timepoint x instrument with status and missing reason."""
    rows = form_rows(spec.forms(session, scores=False), spec.catalog(), spec.options)
    return Dataset(
        "forms",
        _bi("Expected forms with status and missing reason", "应填问卷（状态与缺失原因）"),
        spec.labelled(cols.FORMS_COLUMNS),
        spec.rows("forms", rows),
    )


def patients(session: Session, spec: ExportSpec) -> Dataset:
    """(e) patients: pseudonymous id, site, arm, randomization, end of follow-up, progression."""
    rows = patient_rows(iter_patients(session, spec.filters, spec.as_of, batch=spec.batch), spec.options)
    return Dataset("patients", _bi("Patients", "患者"), cols.PATIENT_COLUMNS, spec.rows("patients", rows))


def events(session: Session, spec: ExportSpec) -> Dataset:
    """events: treatment and clinical events as study days."""
    rows = event_rows(iter_patients(session, spec.filters, spec.as_of, batch=spec.batch), spec.options)
    return Dataset(
        "events", _bi("Treatment and clinical events", "治疗与临床事件"), cols.EVENT_COLUMNS, spec.rows("events", rows)
    )


def alerts(session: Session, spec: ExportSpec) -> Dataset:
    """(f) alerts: symptom alerts without free text."""
    rows = alert_rows(iter_alerts(session, spec.filters, spec.as_of, batch=spec.batch), spec.options)
    return Dataset(
        "alerts", _bi("Symptom alerts", "症状警报"), spec.labelled(cols.ALERT_COLUMNS), spec.rows("alerts", rows)
    )


def item_codes(session: Session, spec: ExportSpec) -> Dataset:
    """item_codes: every item's answer codes and labels (en, zh_Hans); no database access."""
    return Dataset(
        "item_codes",
        _bi("Answer codes of every item", "各条目的回答编码"),
        spec.labelled(cols.ITEM_CODE_COLUMNS),
        spec.rows("item_codes", item_code_rows(spec.instruments, spec.catalog())),
    )


def sdtm_qs(session: Session, spec: ExportSpec, *, studyid: str) -> Dataset:
    """CDISC SDTM QS domain (``qs``)."""
    dataset = qs_export(
        spec.forms(session, scores=False, answers=True), spec.catalog(), spec.instruments, spec.options, studyid=studyid
    )
    return Dataset(dataset.name, dataset.label, dataset.columns, spec.rows("qs", dataset.rows))


def fhir_bundle(session: Session, spec: ExportSpec, path: Path, *, base_url: str) -> Path:
    """FHIR R4 Bundle of Questionnaires and QuestionnaireResponses, written to ``path``."""
    return write_fhir_bundle(
        spec.forms(session, scores=False, answers=True),
        path,
        spec.catalog(),
        spec.instruments,
        spec.options,
        base_url=base_url,
    )


DatasetBuilder = Callable[[Session, ExportSpec], Dataset]

#: The tabular datasets of an export, in the order they are written and documented.
DATASETS: dict[str, DatasetBuilder] = {
    "qol_long": scores_long,
    "qol_wide": scores_wide,
    "items": item_responses,
    "forms": expected_forms,
    "patients": patients,
    "events": events,
    "alerts": alerts,
    "item_codes": item_codes,
}

__all__ = [
    "DATASETS",
    "ExportFilters",
    "ExportSpec",
    "PatientForms",
    "alerts",
    "events",
    "expected_forms",
    "fhir_bundle",
    "item_codes",
    "item_responses",
    "patients",
    "scores_long",
    "scores_wide",
    "sdtm_qs",
]
