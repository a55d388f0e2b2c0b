"""Responses (one filled instrument), their answers, scores and licensed-wording overlays."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from qol_app.db import Base
from qol_app.models.schedule import Timepoint
from qol_app.models.types import created_at, intpk, str16, str32, str64, str255

RESPONDENTS = ("self", "self_assisted", "proxy")
MODES = ("web", "site_tablet", "interview", "paper_transcribed")
DISPLAY_MODES = ("default", "large_print", "mixed")


class Response(Base):
    """One instrument filled for one timepoint.

    ``revision`` 0 is the patient's own form; staff corrections are new revisions that
    supersede it. The unique (timepoint, instrument, revision) constraint is what makes two
    devices share one in-progress form and lets only one submission win.
    """

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("timepoint_id", "instrument_id", "revision"),
        CheckConstraint("respondent IN ('self', 'self_assisted', 'proxy')", name="respondent"),
        CheckConstraint("mode IN ('web', 'site_tablet', 'interview', 'paper_transcribed')", name="mode"),
        CheckConstraint("status IN ('in_progress', 'submitted')", name="status"),
        CheckConstraint("display_mode IN ('default', 'large_print', 'mixed')", name="display_mode"),
    )

    id: Mapped[intpk]
    timepoint_id: Mapped[int] = mapped_column(ForeignKey("timepoints.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument_id: Mapped[str32]
    instrument_version: Mapped[str16]
    revision: Mapped[int] = mapped_column(default=0)
    language: Mapped[str16]
    wording_version: Mapped[str64] = mapped_column(doc="Which wording (own labels or licensed overlay) was shown")
    respondent: Mapped[str16]
    respondent_relationship: Mapped[str64 | None]
    mode: Mapped[str32] = mapped_column(default="web")
    status: Mapped[str16] = mapped_column(default="in_progress")
    started_at: Mapped[created_at]
    submitted_at: Mapped[dt.datetime | None] = mapped_column(doc="Server receipt time of the submission (UTC)")
    completed_on: Mapped[dt.date | None] = mapped_column(
        doc="Paper or interview form: the (patient-local) date the patient completed it; window status and "
        "study day come from it, submitted_at stays the transcription time"
    )
    client_time: Mapped[str32 | None] = mapped_column(doc="The device's local time as it reported it")
    client_utc_offset_minutes: Mapped[int | None]
    entered_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("responses.id"), index=True)
    correction_reason: Mapped[str255 | None]
    scoring_error: Mapped[str255 | None] = mapped_column(doc="Set when scoring failed; the form is kept for staff")
    display_mode: Mapped[str16 | None] = mapped_column(
        doc="How the patient's pages showed the form: default, large_print (one item per screen) or mixed "
        "(both, across its saves); None for forms staff entered and forms saved before this was recorded"
    )
    read_aloud_used: Mapped[bool | None] = mapped_column(
        doc="The patient played the browser's read-aloud on the form's pages (known only with JavaScript)"
    )
    audio_used: Mapped[bool | None] = mapped_column(
        doc="The patient played a site recording on the form's pages (known only with JavaScript)"
    )

    timepoint: Mapped[Timepoint] = relationship()
    answers: Mapped[list[Answer]] = relationship(back_populates="response", order_by="Answer.id")
    scores: Mapped[list[Score]] = relationship(back_populates="response", order_by="Score.id")


class Answer(Base):
    """An item's answer: a value, or an explicit skip (``skipped``); an item never shown has no row."""

    __tablename__ = "answers"
    __table_args__ = (
        UniqueConstraint("response_id", "item_id"),
        CheckConstraint("(skipped AND value IS NULL) OR (NOT skipped AND value IS NOT NULL)", name="value_or_skip"),
    )

    id: Mapped[intpk]
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str32]
    value: Mapped[float | None]
    skipped: Mapped[bool] = mapped_column(default=False)
    answered_at: Mapped[dt.datetime]

    response: Mapped[Response] = relationship(back_populates="answers")


class Score(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("response_id", "scale"),)

    id: Mapped[intpk]
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), index=True)
    scale: Mapped[str16]
    value: Mapped[float | None] = mapped_column(doc="None when the missing-data rule forbids a score; never 0")
    n_items: Mapped[int | None]
    scoring_version: Mapped[str16]
    computed_at: Mapped[created_at]

    response: Mapped[Response] = relationship(back_populates="scores")


class WordingOverlay(Base):
    """A site's licensed official wording for one instrument and language, stored as versioned data."""

    __tablename__ = "wording_overlays"
    __table_args__ = (UniqueConstraint("instrument_id", "language", "wording_version"),)

    id: Mapped[intpk]
    instrument_id: Mapped[str32]
    instrument_version: Mapped[str16]
    language: Mapped[str16]
    wording_version: Mapped[str64]
    source: Mapped[str255 | None]
    content: Mapped[dict[str, Any]]
    sha256: Mapped[str64]
    active: Mapped[bool] = mapped_column(default=True)
    imported_at: Mapped[created_at]
    imported_by: Mapped[str64 | None]


class WordingAudio(Base):
    """A recording of licensed wording (a site's validated audio), stored by the SHA-256 of its bytes.

    In the database beside the overlays that name it, so every web worker serves the same bytes,
    and a backup holds the recordings a patient heard with the answers.
    """

    __tablename__ = "wording_audio"

    id: Mapped[intpk]
    sha256: Mapped[str64] = mapped_column(unique=True)
    content_type: Mapped[str32] = mapped_column(doc="From the file's first bytes on import, never its name")
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    imported_at: Mapped[created_at]
