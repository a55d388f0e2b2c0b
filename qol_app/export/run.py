"""Run an export: read once, build each dataset once, hand it to every writer, zip, audit.

The one entry point for the background job of the statistician page and for ``qol export``. It
reads through the caller's session, writes into ``out_dir`` and records one audit event (who,
when, filters, options and the SHA-256 of every file and of the zip) in the caller's
transaction: the caller commits. ``progress(done, total, what)`` is called after each step
(reading, each dataset built, each file written, the zip), so a caller can show a progress bar.

Reproducible: the same data, as-of time, filters and options give byte-identical files and zip
(nothing in them depends on the clock, the host or the time zone; see export.manifest).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from qol_app.export import build, programs
from qol_app.export.build import DATASETS, ExportSpec
from qol_app.export.manifest import Zipper, build_manifest
from qol_app.export.memory import bulk_gc, release_memory
from qol_app.export.schema import LOCALES, Dataset, data_dictionary
from qol_app.export.source import ExportFilters, Source
from qol_app.export.writers import WRITERS, write_dataset
from qol_app.instruments import Registry, get_registry
from qol_app.scheduling.forms import COMPLIANCE_RECEIVED_RULE
from qol_app.scoring import SCORING_VERSION
from qol_app.version import __version__

TABULAR_FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet", "xpt", "dta", "sav")
STANDARD_FORMATS: tuple[str, ...] = ("fhir", "sdtm")
FORMATS: tuple[str, ...] = TABULAR_FORMATS + STANDARD_FORMATS
"""Format ids: the tabular writers (every dataset in each), a FHIR R4 bundle, CDISC SDTM."""

FORMAT_LABELS: Mapping[str, str] = {
    "csv": "CSV (UTF-8)",
    "xlsx": "Excel (.xlsx)",
    "parquet": "Parquet",
    "xpt": "SAS transport v5 (.xpt)",
    "dta": "Stata (.dta)",
    "sav": "SPSS (.sav)",
    "fhir": "FHIR R4 bundle (JSON)",
    "sdtm": "CDISC SDTM QS, SUPPQS, DM, TS, TV + define.xml",
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
    "Instants are UTC, to the second, in every format.",
    (
        "SAS transport files are version 5: 8-character names (the data dictionary gives each variable's XPT name), "
        "ASCII only; columns of Chinese text are left out of them (see xpt_left_out)."
    ),
    "Stata files store coded text as integers with value labels (data dictionary: numeric_code).",
)

Progress = Callable[[int, int, str], None]
"""progress(steps done, steps in all, what was just done)"""


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """Installation settings (from app config): may ISO dates be exported, FHIR base URL, STUDYID."""

    iso_dates_allowed: bool = False
    fhir_base_url: str = "https://conquer.invalid/fhir"
    studyid: str = "CONQUER"
    received_rule: str = COMPLIANCE_RECEIVED_RULE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ExportSettings:
        """``EXPORT_FHIR_BASE_URL``, else ``PUBLIC_BASE_URL`` + ``/fhir`` (QOL_PUBLIC_BASE_URL)."""
        base = config.get("EXPORT_FHIR_BASE_URL") or f"{str(config.get('PUBLIC_BASE_URL') or '').rstrip('/')}/fhir"
        return cls(
            iso_dates_allowed=bool(config.get("EXPORT_ISO_DATES")),
            fhir_base_url=base if base.startswith(("http://", "https://")) else cls.fhir_base_url,
            studyid=str(config.get("EXPORT_STUDY_ID") or cls.studyid),
            received_rule=str(config.get("COMPLIANCE_RECEIVED_RULE") or cls.received_rule),
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

    @property
    def tabular(self) -> list[str]:
        return [f for f in self.formats if f in WRITERS]

    def to_json(self) -> dict[str, Any]:
        """The request as JSON-ready data (for a job row); ``from_json`` reads it back."""
        return {
            "formats": list(self.formats),
            "filters": {
                "sites": list(self.filters.sites),
                "arms": list(self.filters.arms),
                "instruments": list(self.filters.instruments),
                "date_from": self.filters.date_from.isoformat() if self.filters.date_from else None,
                "date_to": self.filters.date_to.isoformat() if self.filters.date_to else None,
            },
            "as_of": self.as_of.isoformat(),
            "iso_dates": self.iso_dates,
            "locale": self.locale,
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportRequest:
        f = data["filters"]
        day = dt.date.fromisoformat
        return cls(
            formats=tuple(data["formats"]),
            filters=ExportFilters(
                sites=tuple(f["sites"]),
                arms=tuple(f["arms"]),
                instruments=tuple(f["instruments"]),
                date_from=day(f["date_from"]) if f["date_from"] else None,
                date_to=day(f["date_to"]) if f["date_to"] else None,
            ),
            as_of=dt.datetime.fromisoformat(data["as_of"]),
            iso_dates=bool(data["iso_dates"]),
            locale=data["locale"],
            threshold=float(data["threshold"]),
        )


@dataclasses.dataclass(frozen=True)
class Written:
    """What :func:`write_export` made: the zip, its manifest, the kept files' folder if asked."""

    zip_path: Path
    manifest: dict[str, Any]
    files_dir: Path | None = None


def count_steps(request: ExportRequest) -> int:
    """How many progress steps ``write_export`` reports for ``request`` (its progress total)."""
    tabular = request.tabular
    steps = 1 + 1  # read, zip
    if tabular:
        steps += len(DATASETS) * (1 + len(tabular))
    if tabular or "sdtm" in request.formats:
        steps += len(dict.fromkeys(["csv", *tabular])) + 1  # data dictionary, import programs
    if "sdtm" in request.formats:
        steps += 1 + len(SDTM_DOMAINS) * 2 + 1
    if "fhir" in request.formats:
        steps += 1
    return steps


SDTM_DOMAINS = ("qs", "suppqs", "dm", "ts", "tv")
SPOOLED = frozenset({"qol_long", "items"})
"""Datasets large enough to be built a part at a time into a temporary file (so are SDTM QS)."""


def write_export(
    session: Session,
    request: ExportRequest,
    out_dir: Path,
    *,
    now: dt.datetime,
    data_lock: Any,
    audit_head: Any,
    settings: ExportSettings = ExportSettings(),
    registry: Registry | None = None,
    progress: Progress | None = None,
    keep_files: bool = False,
) -> Written:
    """Write ``<out_dir>/<stem>.zip`` (files + manifest.json); returns where and what. Auditing it
    is the caller's (``services.exports.run_export``), as are the manifest's ``data_lock`` and
    ``audit_head`` (the data lock and the audit chain head at the as-of time).

    ``keep_files`` also leaves the files in ``<out_dir>/<stem>/``. Raises ValueError for an as-of
    time in the future, PermissionError when ISO dates are asked for but not enabled by an admin.
    """
    if request.as_of > now:
        raise ValueError("the as-of time cannot be in the future")
    if request.iso_dates and not settings.iso_dates_allowed:
        raise PermissionError("ISO dates are not enabled for exports (EXPORT_ISO_DATES)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    registry = registry or get_registry()
    spec = ExportSpec(
        filters=request.filters,
        as_of=request.as_of,
        iso_dates=request.iso_dates,
        threshold=request.threshold,
        registry=registry,
        received_rule=settings.received_rule,
    )
    total = count_steps(request)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total, what)

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        with Zipper(out_dir / f"{request.stem}.zip", request.as_of) as zipper:  # zips each file once made
            with bulk_gc():
                trial = build.load(Source(session, spec.filters, spec.instruments), spec)
                release_memory()
                step("read")
                rows, left_out = _write_files(trial, request, settings, work, step, zipper.add)

            def manifest_for(entries: list[dict[str, Any]]) -> dict[str, Any]:
                manifest = build_manifest(
                    entries,
                    app_version=__version__,
                    scoring_version=SCORING_VERSION,
                    instrument_versions={inst: registry.get(inst).version for inst in spec.instruments},
                    filters=request.filters.describe(),
                    as_of=request.as_of,
                    data_lock=data_lock,
                )
                manifest["options"] = {
                    "formats": list(request.formats),
                    "iso_dates": request.iso_dates,
                    "labels": request.locale,
                    "deterioration_threshold": request.threshold,
                    "baseline_timepoint": spec.baseline_key,
                    "studyid": settings.studyid,
                    "compliance_received_rule": settings.received_rule,
                }
                manifest["audit_head"] = audit_head
                manifest["rows"] = rows
                manifest["xpt_left_out"] = left_out
                manifest["notes"] = list(NOTES)
                return manifest

            zip_path, manifest = zipper.finish(manifest_for)
        step("zip")
        kept = None
        if keep_files:
            kept = out_dir / request.stem
            shutil.rmtree(kept, ignore_errors=True)
            work.rename(kept)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Written(zip_path, manifest, kept)


def _write_files(
    trial: build.Trial,
    request: ExportRequest,
    settings: ExportSettings,
    work: Path,
    step: Callable[[str], None],
    add: Callable[[Path], None],
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Write every file of the export into ``work``, handing each to ``add`` once written."""
    from qol_app.export import define, fhir, sdtm

    rows: dict[str, int] = {}
    left_out: dict[str, list[str]] = {}
    schemas: list[Dataset] = []
    widths: dict[str, dict[str, int]] = {}
    tabular = request.tabular

    def write_all(dataset: Dataset, formats: list[str]) -> None:
        for fmt in formats:
            path = write_dataset(fmt, dataset, work, locale=request.locale, as_of=request.as_of)
            add(path)
            rows[path.name] = dataset.num_rows
            if fmt == "csv":
                widths[dataset.name] = programs.text_widths(dataset)
            if fmt == "xpt" and dataset.xpt_drop:
                left_out[path.name] = list(dataset.xpt_drop)
            release_memory()
            step(path.name)

    item_rows: build.ItemRows | None = None
    if tabular:
        for name, builder in DATASETS.items():
            if name == "items":  # large: built a part at a time into a temporary file
                trial.answers  # noqa: B018 - read here: not held while qol_long is written
                release_memory()
                item_rows = build.item_rows(trial)
                trial.drop_answers()  # what the datasets need of them is in item_rows
                release_memory()
                dataset = build.items(trial, item_rows, spool=True)
            elif name in SPOOLED:
                dataset = build.qol_long(trial, spool=True)
            else:
                dataset = builder(trial)
            release_memory()  # the build's temporaries, before the writers make theirs
            step(name)
            write_all(dataset, tabular)
            schemas.append(dataset.schema_only())
            if dataset.spool is not None:
                dataset.spool.close()
            del dataset
            if name == "qol_wide":
                trial.drop_scores()  # the last dataset that shows them (build.DATASETS' order)
            release_memory()
    if item_rows is None and {"sdtm", "fhir"} & set(request.formats):
        item_rows = build.item_rows(trial)
        trial.drop_answers()
        release_memory()
    if "sdtm" in request.formats:
        domains = sdtm.build_domains(trial, item_rows, studyid=settings.studyid, spool=True)  # type: ignore[arg-type]
        release_memory()
        step("sdtm")
        for domain in domains:
            write_all(domain, ["xpt", "csv"])
        path = work / "define.xml"
        path.write_bytes(define.define_xml(domains, studyid=settings.studyid, as_of=request.as_of))
        release_memory()
        add(path)
        step(path.name)
        schemas.extend(d.schema_only() for d in domains)
        for domain in domains:
            if domain.spool is not None:
                domain.spool.close()
        del domains
        release_memory()
    if "fhir" in request.formats:
        add(fhir.write_bundle(trial, item_rows, work / FHIR_FILE, base_url=settings.fhir_base_url))  # type: ignore[arg-type]
        step(FHIR_FILE)
    if schemas:
        dictionary = data_dictionary(schemas)
        write_all(dictionary, list(dict.fromkeys(["csv", *tabular])))
    csvs = [s for s in schemas if (work / f"{s.name}.csv").exists()] + ([dictionary] if schemas else [])
    if csvs:
        for name, text in (
            ("import_qol.sas", programs.sas_program(csvs, widths)),
            ("import_qol.R", programs.r_script(csvs)),
        ):
            path = work / name
            path.write_text(text, encoding="utf-8", newline="\n")
            add(path)
        step("import programs")
    return rows, left_out


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
