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
from collections.abc import Mapping, Sequence
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


def build_manifest(
    files: Sequence[Path],
    *,
    app_version: str,
    scoring_version: str,
    instrument_versions: Mapping[str, str],
    filters: Mapping[str, Any],
    as_of: datetime,
    data_lock: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe an export: versions, filters, as-of time and, per file, its name, size and SHA-256.

    Files are listed by name (their base names must be unique, as they become zip entries).
    ``data_lock`` is the lock state at the as-of time (``services.locks.describe``): whether the
    trial was locked and which site or patient locks were in force; it is recorded as given.
    """
    if as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    entries = []
    for path in sorted((Path(f) for f in files), key=lambda p: p.name):
        entries.append({"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names) or MANIFEST_NAME in names:
        raise ValueError(f"file names must be unique and not {MANIFEST_NAME!r}: {names}")
    return {
        "manifest_version": MANIFEST_VERSION,
        "as_of": utc_iso(as_of),
        "app_version": app_version,
        "scoring_version": scoring_version,
        "instrument_versions": _plain(instrument_versions, "instrument_versions"),
        "filters": _plain(filters, "filters"),
        "files": entries,
        "data_lock": _plain(data_lock, "data_lock") if data_lock is not None else None,
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The canonical JSON encoding of a manifest (sorted keys, UTF-8, trailing newline)."""
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def write_zip(files: Sequence[Path], manifest: Mapping[str, Any], zip_path: Path, fixed_time: datetime) -> Path:
    """Write `files` plus manifest.json to `zip_path` reproducibly and return `zip_path`.

    Entries are sorted by name and all carry `fixed_time` (its UTC wall time when aware). Each
    file is hashed as it is copied; if it no longer matches the manifest the zip is not created
    and ValueError is raised, so a manifest never vouches for different bytes.
    """
    moment = fixed_time.astimezone(UTC) if fixed_time.utcoffset() is not None else fixed_time
    stamp = zip_time(moment)
    expected = {entry["name"]: entry["sha256"] for entry in manifest["files"]}
    by_name = {Path(f).name: Path(f) for f in files}
    if sorted(by_name) != sorted(expected):
        raise ValueError(f"files {sorted(by_name)} do not match the manifest {sorted(expected)}")
    zip_path = Path(zip_path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", dir=zip_path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        with FixedTimeZipFile(temp, date_time=stamp) as archive:
            for name in sorted([*by_name, MANIFEST_NAME]):
                if name == MANIFEST_NAME:
                    archive.writestr(name, manifest_bytes(manifest))
                    continue
                digest = hashlib.sha256()
                large = by_name[name].stat().st_size >= ZIP64_LIMIT
                info = fixed_info(name, stamp)
                if name.endswith(STORED):
                    info.compress_type = ZIP_STORED
                else:  # fastest deflate: exports can be gigabytes of text
                    setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel", 1)
                with by_name[name].open("rb") as src, archive.open(info, "w", force_zip64=large) as dst:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != expected[name]:
                    raise ValueError(f"{name} changed after the manifest was built")
        os.replace(temp, zip_path)
    finally:
        temp.unlink(missing_ok=True)
    return zip_path
