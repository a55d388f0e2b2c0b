"""Licensed official wording, imported per instrument and language as versioned overlays.

The overlay's canonical text is stored in the database (not the instance folder) so every
web worker and site sees the same wording, and old versions stay for the record. Its recordings
(a site's licensed audio) are stored there too, by the SHA-256 of their bytes: every worker and
node serves the same bytes without a shared folder, a backup of the database holds what patients
heard beside their answers, and the stored overlay names each recording by its content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, select, update
from sqlalchemy.orm import Session

from qol_app.instruments import Registry, get_registry, overlay_text, parse_overlay
from qol_app.instruments import WordingOverlay as Overlay
from qol_app.instruments.wording import load_recordings
from qol_app.models import WordingAudio, WordingOverlay
from qol_app.services import audit
from qol_app.services.audit import Actor


def import_overlay(
    session: Session,
    actor: Actor,
    path: Path,
    *,
    now: dt.datetime,
    imported_by: str | None = None,
    registry: Registry | None = None,
) -> WordingOverlay:
    """Validate ``path`` against its instrument and make it the active wording for its language.

    Re-importing the same version with the same text is a no-op; the same version with
    different text (or different recordings) is refused (a version must always mean one wording).
    Recordings named under ``audio`` are read relative to the file's folder, checked (readable,
    a format browsers play) and stored by content; a problem raises ``WordingOverlayError``
    naming the file and field.
    """
    overlay = parse_overlay(path, registry=registry or get_registry())
    overlay, recordings = load_recordings(overlay, path.parent)
    text = overlay_text(overlay)
    digest = hashlib.sha256(text.encode()).hexdigest()
    existing = session.scalar(
        select(WordingOverlay).where(
            WordingOverlay.instrument_id == overlay.instrument,
            WordingOverlay.language == overlay.language,
            WordingOverlay.wording_version == overlay.wording_version,
        )
    )
    if existing is not None:
        if existing.sha256 != digest:
            raise ValueError(
                f"{path.name}: wording_version {overlay.wording_version!r} for {overlay.instrument}/"
                f"{overlay.language} was already imported with different text; give it a new version"
            )
        return existing
    stored = set(session.scalars(select(WordingAudio.sha256).where(WordingAudio.sha256.in_(list(recordings)))))
    for digest_of, recording in recordings.items():
        if digest_of not in stored:
            session.add(
                WordingAudio(
                    sha256=digest_of,
                    content_type=recording.content_type,
                    size=len(recording.data),
                    data=recording.data,
                    imported_at=now,
                )
            )
    session.execute(
        update(WordingOverlay)
        .where(
            WordingOverlay.instrument_id == overlay.instrument,
            WordingOverlay.language == overlay.language,
        )
        .values(active=False)
    )
    row = WordingOverlay(
        instrument_id=overlay.instrument,
        instrument_version=overlay.instrument_version,
        language=overlay.language,
        wording_version=overlay.wording_version,
        source=overlay.source,
        content={"yaml": text},
        sha256=digest,
        active=True,
        imported_at=now,
        imported_by=imported_by,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "import_wording",
        row,
        new={
            "instrument": row.instrument_id,
            "language": row.language,
            "wording_version": row.wording_version,
            "sha256": digest,
            "recordings": len(recordings),
        },
        now=now,
    )
    return row


def active_overlay(
    session: Session,
    instrument_id: str,
    language: str,
    *,
    instrument_version: str | None = None,
    registry: Registry | None = None,
) -> Overlay | None:
    """The licensed wording to show for ``instrument_id`` in ``language``, if a site imported one."""
    return overlay_by_digest(
        session, session.scalar(select(active_digest(instrument_id, language, instrument_version))), registry
    )


def active_overlays(
    session: Session, instruments: Sequence[tuple[str, str]], language: str, *, registry: Registry | None = None
) -> dict[str, Overlay | None]:
    """``active_overlay`` for several ``(instrument id, version)`` pairs in one query (a home page
    lists every form of its visits)."""
    if not instruments:
        return {}
    wanted = dict(instruments)
    rows = session.execute(
        select(WordingOverlay.instrument_id, WordingOverlay.instrument_version, WordingOverlay.sha256)
        .where(
            WordingOverlay.instrument_id.in_(wanted),
            WordingOverlay.language == language,
            WordingOverlay.active.is_(True),
        )
        .order_by(WordingOverlay.id)
    ).all()
    digests: dict[str, str] = {}
    for instrument_id, version, sha256 in rows:  # the newest active row wins, as in active_digest
        if wanted[instrument_id] == version:
            digests[instrument_id] = sha256
    return {i: overlay_by_digest(session, digests.get(i), registry) for i in wanted}


def active_digest(instrument_id: Any, language: Any, instrument_version: Any) -> ScalarSelect[str]:
    """The active overlay's sha256 as a scalar subquery, so a page can fetch it with its own rows."""
    return (
        select(WordingOverlay.sha256)
        .where(*_active(instrument_id, language, instrument_version))
        .order_by(WordingOverlay.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def overlay_by_digest(session: Session, sha256: str | None, registry: Registry | None = None) -> Overlay | None:
    """The overlay stored under ``sha256``, read, parsed and validated against its instrument once
    per process (a text never changes under its hash), so a broken row can never show half
    official, half paraphrased text."""
    if sha256 is None:
        return None
    registry = registry or get_registry()
    key = (sha256, registry.directory)
    overlay = _BY_DIGEST.get(key)
    if overlay is None:
        content = session.scalar(select(WordingOverlay.content).where(WordingOverlay.sha256 == sha256).limit(1))
        if content is None:
            return None
        overlay = parse_overlay(content["yaml"], registry=registry, name=f"overlay {sha256[:12]}")
        _BY_DIGEST[key] = overlay
    return overlay


def recording(session: Session, sha256: str) -> WordingAudio | None:
    """A stored recording by the SHA-256 of its bytes (None if no overlay brought it)."""
    return session.scalar(select(WordingAudio).where(WordingAudio.sha256 == sha256))


#: Parsed overlays by the hash of their stored text (a few per instrument and language at most).
_BY_DIGEST: dict[tuple[str, str], Overlay] = {}


def _active(instrument_id: Any, language: Any, instrument_version: Any) -> list[ColumnElement[bool]]:
    conditions = [
        WordingOverlay.instrument_id == instrument_id,
        WordingOverlay.language == language,
        WordingOverlay.active.is_(True),
    ]
    if instrument_version is not None:
        conditions.append(WordingOverlay.instrument_version == instrument_version)
    return conditions
