"""Export manifests and reproducible zip bundles.

The manifest says what an export contains and how it was made (app, scoring and instrument
versions, the filters applied, the as-of time) and fixes each file's SHA-256, so a statistician
can prove months later which data an analysis used. The zip is byte-for-byte reproducible:
sorted entry names, one fixed timestamp, fixed permissions, manifest.json inside.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zipfile import ZIP64_LIMIT, ZIP_STORED

from qol_app.export.writers._zip import FixedTimeZipFile, fixed_info, zip_time
from qol_app.export.writers.base import utc_iso

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CHUNK = 1 << 20
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


def write_zip(
    files: Sequence[Path],
    manifest_for: Callable[[list[dict[str, Any]]], dict[str, Any]],
    zip_path: Path,
    fixed_time: datetime,
) -> tuple[Path, dict[str, Any]]:
    """Write `files` plus manifest.json to `zip_path` reproducibly; returns the path and the manifest.

    Each file is hashed as it is copied into the zip (one read), and ``manifest_for(entries)``
    makes the manifest from those entries (:func:`file_entries`' form), so the manifest vouches
    for exactly the bytes in the zip. The manifest is written last; the zip's directory lists the
    entries by name. Every entry carries `fixed_time` (its UTC wall time when aware).
    """
    moment = fixed_time.astimezone(UTC) if fixed_time.utcoffset() is not None else fixed_time
    stamp = zip_time(moment)
    by_name = {Path(f).name: Path(f) for f in files}
    if len(by_name) != len(files) or MANIFEST_NAME in by_name:
        raise ValueError(f"file names must be unique and not {MANIFEST_NAME!r}: {sorted(by_name)}")
    zip_path = Path(zip_path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", dir=zip_path.parent)
    os.close(handle)
    temp = Path(temp_name)
    entries: list[dict[str, Any]] = []
    try:
        with FixedTimeZipFile(temp, date_time=stamp) as archive:
            for name in sorted(by_name):
                digest = hashlib.sha256()
                size = by_name[name].stat().st_size
                info = fixed_info(name, stamp)
                if name.endswith(STORED):
                    info.compress_type = ZIP_STORED
                with by_name[name].open("rb") as src, archive.open(info, "w", force_zip64=size >= ZIP64_LIMIT) as dst:
                    copied = 0
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        copied += len(chunk)
                entries.append({"name": name, "bytes": copied, "sha256": digest.hexdigest()})
            manifest = manifest_for(entries)
            if [e["name"] for e in manifest["files"]] != sorted(by_name):
                raise ValueError("the manifest does not list the files zipped")
            archive.writestr(MANIFEST_NAME, manifest_bytes(manifest))
            archive.filelist.sort(key=lambda info: info.filename)
        os.replace(temp, zip_path)
    finally:
        temp.unlink(missing_ok=True)
    return zip_path, manifest
