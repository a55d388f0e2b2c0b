"""Run an export: datasets x formats -> files -> manifest -> reproducible zip, audited.

The one entry point for the statistician page and ``qol export``. It reads through the caller's
session, writes into ``out_dir`` and records one audit event (who, when, filters, options and the
SHA-256 of every file and of the zip) in the caller's transaction: the caller commits.

Reproducible: the same data, as-of time, filters and options give byte-identical files and zip
(nothing in them depends on the clock, the host or the time zone; see export.manifest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from qol_app import __version__
from qol_app.export.builders import DATASETS, ExportFilters, ExportSpec, fhir_bundle, sdtm_qs
from qol_app.export.dataset import LOCALES, Dataset, data_dictionary
from qol_app.export.manifest import build_manifest, sha256_file, write_zip
from qol_app.export.writers import WRITERS, write_dataset
from qol_app.instruments import Registry, get_registry
from qol_app.scoring import SCORING_VERSION
from qol_app.services import audit, locks
from qol_app.services.audit import Actor

TABULAR_FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet", "xpt", "dta", "sav")
STANDARD_FORMATS: tuple[str, ...] = ("fhir", "sdtm")
FORMATS: tuple[str, ...] = TABULAR_FORMATS + STANDARD_FORMATS
"""Format ids: the tabular writers (every dataset in each), a FHIR R4 bundle, SDTM QS (xpt + csv)."""

FORMAT_LABELS: Mapping[str, str] = {
    "csv": "CSV (UTF-8)",
    "xlsx": "Excel (.xlsx)",
    "parquet": "Parquet",
    "xpt": "SAS transport (.xpt)",
    "dta": "Stata (.dta)",
    "sav": "SPSS (.sav)",
    "fhir": "FHIR R4 bundle (JSON)",
    "sdtm": "CDISC SDTM QS (.xpt + .csv)",
}
FHIR_FILE = "fhir_bundle.json"
NOTES = (
    "Dates are study days (randomization = day 1, no day 0) unless ISO dates were enabled and requested.",
    (
        "Statuses, scores and answers are as of the as-of time: later submissions, corrections and status changes "
        "are not included."
    ),
    (
        "Cancelled timepoints and forms not yet open at the as-of time are excluded; every other expected form is "
        "listed, including missed (with the nurse's reason code) and not expected ones (died, withdrawn, lost)."
    ),
    "No names, contact details, tokens or free text are exported; patients appear by pseudonymous study id.",
    "Scores are the stored ones (scoring_version per row); a later rescore changes them.",
    (
        "Missed-form reason codes and timepoint dates are the ones recorded now: a reason entered after the as-of "
        "time still explains the same missed form."
    ),
)


@contextlib.contextmanager
def bulk_gc(threshold: int = 200_000) -> Iterator[None]:
    """Run the cyclic garbage collector rarely while millions of short-lived row tuples are made.

    Rows hold no reference cycles, yet every 700 allocations CPython scans the young generation;
    at export volumes that costs about 40 % of the time. The previous thresholds come back after.
    """
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Installation settings (from app config): may ISO dates be exported, FHIR base URL, STUDYID."""

    iso_dates_allowed: bool = False
    fhir_base_url: str = "https://conquer.invalid/fhir"
    studyid: str = "CONQUER"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ExportSettings:
        base = config.get("EXPORT_FHIR_BASE_URL") or f"{str(config.get('PUBLIC_BASE_URL') or '').rstrip('/')}/fhir"
        return cls(
            iso_dates_allowed=bool(config.get("EXPORT_ISO_DATES")),
            fhir_base_url=base if base.startswith("http") else cls.fhir_base_url,
            studyid=str(config.get("EXPORT_STUDY_ID") or cls.studyid),
        )


@dataclasses.dataclass(frozen=True)
class ExportRequest:
    """One export: formats, filters, as-of time (aware), ISO dates wanted, label language, threshold."""

    formats: tuple[str, ...]
    filters: ExportFilters
    as_of: dt.datetime
    iso_dates: bool = False
    locale: str = "en"
    threshold: float = 10.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown or not self.formats:
            raise ValueError(f"formats must be some of {', '.join(FORMATS)}; got {', '.join(self.formats) or 'none'}")
        object.__setattr__(self, "formats", tuple(f for f in FORMATS if f in self.formats))
        if self.as_of.utcoffset() is None:
            raise ValueError("the as-of time needs a time zone")
        object.__setattr__(self, "as_of", self.as_of.astimezone(dt.UTC))
        if self.locale not in LOCALES:
            raise ValueError(f"label language must be one of {', '.join(LOCALES)}")

    @property
    def stem(self) -> str:
        return f"conquer_qol_{self.as_of:%Y%m%dT%H%M%SZ}"


@dataclasses.dataclass(frozen=True)
class ExportResult:
    zip_path: Path
    manifest: dict[str, Any]
    audit_event_id: int
    files_dir: Path | None = None


def run_export(
    session: Session,
    request: ExportRequest,
    out_dir: Path,
    *,
    actor: Actor,
    now: dt.datetime,
    settings: ExportSettings = ExportSettings(),
    registry: Registry | None = None,
    progress: Callable[[str, int, bool], None] | None = None,
    keep_files: bool = False,
) -> ExportResult:
    """Write ``<out_dir>/<stem>.zip`` (files + manifest.json) and audit it; returns where and what.

    ``keep_files`` also leaves the files in ``<out_dir>/<stem>/``. ``progress(dataset, rows, done)`` is
    called every 50,000 rows and when a file is complete. Raises ValueError for an as-of
    time in the future, PermissionError when ISO dates are asked for but not enabled by an admin.
    """
    if request.as_of > now:
        raise ValueError("the as-of time cannot be in the future")
    if request.iso_dates and not settings.iso_dates_allowed:
        raise PermissionError("ISO dates are not enabled for exports (EXPORT_ISO_DATES)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    registry = registry or get_registry()
    counts: dict[str, int] = {}

    def report(name: str, n: int, done: bool) -> None:
        counts[name] = n
        if progress is not None:
            progress(name, n, done)

    spec = ExportSpec(
        filters=request.filters,
        as_of=request.as_of,
        iso_dates=request.iso_dates,
        threshold=request.threshold,
        registry=registry,
        progress=report,
    )
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        with bulk_gc():
            files, row_counts = _write_files(session, request, spec, settings, work, counts)
        manifest = build_manifest(
            files,
            app_version=__version__,
            scoring_version=SCORING_VERSION,
            instrument_versions={inst: registry.get(inst).version for inst in spec.instruments},
            filters=request.filters.describe(),
            as_of=request.as_of,
            data_lock=locks.describe(session, request.as_of),
        )
        manifest["options"] = {
            "formats": list(request.formats),
            "iso_dates": request.iso_dates,
            "labels": request.locale,
            "deterioration_threshold": request.threshold,
            "baseline_timepoint": spec.baseline_key,
            "studyid": settings.studyid,
        }
        manifest["rows"] = row_counts
        manifest["notes"] = list(NOTES)
        zip_path = write_zip(files, manifest, out_dir / f"{request.stem}.zip", request.as_of)
        kept = None
        if keep_files:
            kept = out_dir / request.stem
            shutil.rmtree(kept, ignore_errors=True)
            work.rename(kept)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    event = audit.record(
        session,
        actor,
        "export",
        entity_type="export",
        entity_id=request.stem,
        new={
            "as_of": request.as_of,
            "filters": request.filters.describe(),
            "options": manifest["options"],
            "files": {f["name"]: f["sha256"] for f in manifest["files"]},
            "zip": zip_path.name,
            "zip_sha256": sha256_file(zip_path),
        },
        now=now,
    )
    return ExportResult(zip_path, manifest, event.id, kept)


def _write_files(
    session: Session,
    request: ExportRequest,
    spec: ExportSpec,
    settings: ExportSettings,
    work: Path,
    counts: dict[str, int],
) -> tuple[list[Path], dict[str, int]]:
    files: list[Path] = []
    rows: dict[str, int] = {}
    schemas: dict[str, Dataset] = {}

    def write(fmt: str, dataset: Dataset) -> None:
        counts.pop(dataset.name, None)
        path = write_dataset(fmt, dataset, work, locale=request.locale, as_of=request.as_of)
        files.append(path)
        schemas.setdefault(dataset.name, dataset)
        if dataset.name in counts:
            rows[path.name] = counts[dataset.name]

    tabular = [f for f in request.formats if f in WRITERS]
    for fmt in tabular:
        for builder in DATASETS.values():
            write(fmt, builder(session, spec))
    if "sdtm" in request.formats:
        for fmt in ("xpt", "csv"):
            write(fmt, sdtm_qs(session, spec, studyid=settings.studyid))
    if "fhir" in request.formats:
        files.append(fhir_bundle(session, spec, work / FHIR_FILE, base_url=settings.fhir_base_url))
    if not schemas:  # FHIR only: nothing tabular to describe
        return files, rows
    for fmt in dict.fromkeys(["csv", *tabular]):
        files.append(
            write_dataset(fmt, data_dictionary(schemas.values()), work, locale=request.locale, as_of=request.as_of)
        )
    return files, rows


def parse_as_of(text: str) -> dt.datetime:
    """An as-of time from ISO 8601 text: with Z or an offset, or UTC when none is given; a date
    alone means 00:00 UTC that day. ValueError with a readable message otherwise."""
    text = text.strip()
    try:
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r} (e.g. 2026-03-01T00:00:00Z)") from None
    return (moment if moment.utcoffset() is not None else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
