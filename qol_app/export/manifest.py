"""Export manifests and reproducible zip bundles.

The manifest says what an export contains and how it was made (app, scoring and instrument
versions, the filters applied, the as-of time) and fixes each file's SHA-256, so a statistician
can prove months later which data an analysis used. The zip is byte-for-byte reproducible: the
entries in the order the export makes them (the same every time) and listed by name, one fixed
timestamp, fixed permissions, manifest.json inside, made from the hashes of the bytes zipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zipfile import ZIP64_LIMIT, ZIP_STORED

from qol_app.export.writers._zip import FixedTimeZipFile, fixed_info, zip_time
from qol_app.export.writers.base import utc_iso

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CHUNK = 1 << 20
_ZIP_CHUNK = 4 << 20
"""Read 4 MiB at a time into the zip: the zip's worker thread then waits for the GIL seldom."""
STORED = (".xlsx", ".parquet")
"""Formats compressed already: stored in the zip as they are."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _plain(value: Any, where: str) -> Any:
    """`value` as JSON-ready data: dates ISO, datetimes UTC ISO; anything else unknown -> TypeError."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError(f"{where}: datetime must be timezone-aware")
        return utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        ordered = sorted(value.items(), key=lambda kv: str(kv[0]))
        return {str(k): _plain(v, f"{where}.{k}") for k, v in ordered}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v, where) for v in items]
    raise TypeError(f"{where}: cannot put {type(value).__name__} in a manifest")


def file_entries(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Each file's manifest entry (name, size, SHA-256), by name."""
    return [
        {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted((Path(f) for f in files), key=lambda p: p.name)
    ]


def build_manifest(
    entries: Sequence[Mapping[str, Any]],
    *,
    app_version: str,
    scoring_version: str,
    instrument_versions: Mapping[str, str],
    filters: Mapping[str, Any],
    as_of: datetime,
    data_lock: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe an export: versions, filters, as-of time and, per file, its name, size and SHA-256
    (``entries``: as :func:`file_entries` or :func:`write_zip` make them).

    File names must be unique (they become zip entries). ``data_lock`` is the lock state at the
    as-of time (``services.locks.describe``): whether the trial was locked and which site or
    patient locks were in force; it is recorded as given.
    """
    if as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    files = sorted((dict(e) for e in entries), key=lambda e: e["name"])
    names = [e["name"] for e in files]
    if len(set(names)) != len(names) or MANIFEST_NAME in names:
        raise ValueError(f"file names must be unique and not {MANIFEST_NAME!r}: {names}")
    return {
        "manifest_version": MANIFEST_VERSION,
        "as_of": utc_iso(as_of),
        "app_version": app_version,
        "scoring_version": scoring_version,
        "instrument_versions": _plain(instrument_versions, "instrument_versions"),
        "filters": _plain(filters, "filters"),
        "files": files,
        "data_lock": _plain(data_lock, "data_lock") if data_lock is not None else None,
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The canonical JSON encoding of a manifest (sorted keys, UTF-8, trailing newline)."""
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


class Zipper:
    """Builds a reproducible zip in a worker thread while its files are still being made.

    ``add(path)`` queues a finished file; the worker copies it in (hashing it as it reads it,
    deflating it with ISA-L; each releases the GIL, so on a second core this overlaps the making of
    the next file). ``finish(manifest_for)`` waits for the queue, writes manifest.json last, lists
    the zip's directory by name and moves the zip into place. Entries are in the order added, so
    the same files added in the same order give the same bytes. Every entry carries `fixed_time`
    (its UTC wall time when aware). Used as a context manager: on an error nothing is left behind.
    """

    def __init__(self, zip_path: Path, fixed_time: datetime) -> None:
        moment = fixed_time.astimezone(UTC) if fixed_time.utcoffset() is not None else fixed_time
        self.stamp = zip_time(moment)
        self.zip_path = Path(zip_path)
        handle, temp_name = tempfile.mkstemp(prefix=f".{self.zip_path.name}.", dir=self.zip_path.parent)
        os.close(handle)
        self.temp = Path(temp_name)
        self.archive = FixedTimeZipFile(self.temp, date_time=self.stamp)
        self.entries: list[dict[str, Any]] = []
        self.names: set[str] = set()
        self.pending: list[Future[None]] = []
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-zip")

    def __enter__(self) -> Zipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)
        self.archive.close()
        self.temp.unlink(missing_ok=True)

    def add(self, path: Path) -> None:
        path = Path(path)
        if path.name in self.names or path.name == MANIFEST_NAME:
            raise ValueError(f"file names must be unique and not {MANIFEST_NAME!r}: {path.name}")
        self.names.add(path.name)
        self.pending.append(self.worker.submit(self._copy, path))

    def _copy(self, path: Path) -> None:
        digest = hashlib.sha256()
        info = fixed_info(path.name, self.stamp)
        if path.name.endswith(STORED):
            info.compress_type = ZIP_STORED
        copied = 0
        large = path.stat().st_size >= ZIP64_LIMIT
        with path.open("rb") as src, self.archive.open(info, "w", force_zip64=large) as dst:
            while chunk := src.read(_ZIP_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                copied += len(chunk)
        self.entries.append({"name": path.name, "bytes": copied, "sha256": digest.hexdigest()})

    def finish(self, manifest_for: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
        """Write the manifest ``manifest_for(entries)`` makes (entries: :func:`file_entries`' form, of
        the bytes zipped, so the manifest vouches for exactly those) and move the zip into place."""
        for future in self.pending:
            future.result()  # the first failed copy's error
        manifest = manifest_for(sorted(self.entries, key=lambda e: e["name"]))
        if [e["name"] for e in manifest["files"]] != sorted(self.names):
            raise ValueError("the manifest does not list the files zipped")
        self.archive.writestr(MANIFEST_NAME, manifest_bytes(manifest))
        self.archive.filelist.sort(key=lambda info: info.filename)
        self.archive.close()
        os.replace(self.temp, self.zip_path)
        return self.zip_path, manifest


def write_zip(
    files: Sequence[Path],
    manifest_for: Callable[[list[dict[str, Any]]], dict[str, Any]],
    zip_path: Path,
    fixed_time: datetime,
) -> tuple[Path, dict[str, Any]]:
    """Zip `files` (by name) plus the manifest ``manifest_for`` makes (see :class:`Zipper`)."""
    with Zipper(zip_path, fixed_time) as zipper:
        for path in sorted((Path(f) for f in files), key=lambda p: p.name):
            zipper.add(path)
        return zipper.finish(manifest_for)
