"""Helpers shared by the web tests: the export trial (a small trial with everything an export
must get right or must never show) and running an export over it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from qol_app.export.run import ExportRequest, ExportSettings
from qol_app.export.source import ExportFilters
from qol_app.services import alerts, responses
from qol_app.services.audit import Actor
from qol_app.services.exports import run_export

UTC = dt.UTC
C30, EQ5D, DIARY = "eortc_qlq_c30", "eq5d5l", "symptom_diary"
C30_ANSWERS = {f"q{i}": 1 for i in range(1, 29)} | {"q29": 7, "q30": 7}
C30_WORSE = {f"q{i}": 3 for i in range(1, 29)} | {"q29": 2, "q30": 2}
EQ_ANSWERS = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 85}
SECRET_TEXTS = (
    "Li Na at daughter's wedding in Hangzhou",
    "neighbour Auntie Wang",
    "Called Li Na's husband",
    "item 29 was mis-tapped by Li Na",
)


@dataclasses.dataclass
class Trial:
    nurse: object
    statistician: object
    admin: object
    investigator: object
    needles: list[str]


def _day(d: dt.date, hour: int = 16) -> dt.datetime:
    """16:00 UTC = midnight in Shanghai: the start of the next local day."""
    return dt.datetime.combine(d, dt.time(hour), tzinfo=UTC)


def _timepoint(factory, enrolled, key, target, instruments, **kw):
    opens = _day(target - dt.timedelta(days=4))
    tp = factory.timepoint(
        enrolled,
        key=key,
        instruments=instruments,
        target_date=target,
        anchor_date=target,
        opens_at=opens,
        closes_at=opens + dt.timedelta(days=7),
        grace_closes_at=opens + dt.timedelta(days=10),
        rule_id=key.split("-")[0],
        anchor_kind="randomization" if key == "baseline" else "systemic_cycle",
        kind="diary" if instruments == [DIARY] else "questionnaire",
        **kw,
    )
    tp.created_at = _day(target - dt.timedelta(days=30))
    return tp


def _fill(session, enrolled, tp, instrument_id, answers, at, *, respondent="self", relationship=None):
    patient = enrolled.patient
    actor = Actor("patient", str(patient.id))
    # The app stores only its relationship codes; free text here stands for a row written by an
    # older version, which the export must still never show.
    legacy = relationship if relationship not in (None, *responses.RELATIONSHIPS) else None
    responses.set_respondent(session, actor, tp, respondent, "other_relative" if legacy else relationship, at)
    instrument = responses.registry().get(instrument_id)
    texts = responses.localized(session, instrument, patient.language)
    response = responses.start_response(session, actor, tp, texts, at)
    items = responses.presented_items(instrument, patient)
    responses.save_page(session, actor, response, items, answers, at, skip=items)
    result = responses.submit(session, actor, response, patient, at)
    if legacy:
        tp.respondent_relationship = response.respondent_relationship = legacy
        session.flush()
    return result


@pytest.fixture
def export_trial(session, factory) -> Trial:
    """Two sites, two patients with contact details, completed / corrected / missed ('other' with free
    text) / pending / cancelled / not-expected forms, a diary with a red alert handled by a nurse."""
    s1 = factory.site("S1", name="Riverside Teaching Hospital", contact_phone="021-6666-1234")
    s2 = factory.site("S2", name="Lakeside Cancer Centre", contact_phone="0991-777-4321")
    nurse = factory.staff(
        "nurse", [s1], full_name="Zhou Meiling", email="zhou.meiling@riverside.example", phone="13700001111"
    )
    stat = factory.staff("statistician", full_name="Qian Jun", email="qian.jun@stats.example", phone="13600002222")
    admin = factory.staff("admin", [s1, s2], full_name="Admin Sun Li", email="sun.li@admin.example")
    inv = factory.staff("investigator", [s1, s2], full_name="Dr Wu Gang", email="wu.gang@riverside.example")
    p1 = factory.patient(
        s1,
        arm="A",
        study_id="S1-001",
        randomization_date=dt.date(2026, 1, 5),
        pin="739164",
        email="li.na.patient@example.com",
        phone="13912345678",
    )
    p2 = factory.patient(
        s2,
        arm="B",
        study_id="S2-001",
        randomization_date=dt.date(2026, 1, 20),
        pin="582046",
        email="zhang.wei@example.net",
        phone="+86 139 8765 4321",
        language="en",
    )
    for enrolled in (p1, p2):
        enrolled.patient.created_at = dt.datetime(2025, 12, 1, tzinfo=UTC)

    base = _timepoint(factory, p1, "baseline", dt.date(2026, 1, 5), [C30, EQ5D])
    _fill(session, p1, base, C30, C30_ANSWERS, dt.datetime(2026, 1, 4, 2, tzinfo=UTC))
    _fill(session, p1, base, EQ5D, EQ_ANSWERS, dt.datetime(2026, 1, 4, 2, 5, tzinfo=UTC))
    cycle1 = _timepoint(factory, p1, "sys-c1", dt.date(2026, 2, 1), [C30, EQ5D], anchor_number=1)
    first = _fill(
        session,
        p1,
        cycle1,
        C30,
        C30_WORSE,
        dt.datetime(2026, 2, 2, 3, tzinfo=UTC),
        respondent="proxy",
        relationship=SECRET_TEXTS[1],
    )
    responses.correct_response(
        session, nurse, first.response, {"q30": 1}, SECRET_TEXTS[3], dt.datetime(2026, 3, 5, tzinfo=UTC)
    )
    cycle2 = _timepoint(factory, p1, "sys-c2", dt.date(2026, 2, 22), [C30, EQ5D], anchor_number=2)
    cycle2.missed_reason, cycle2.missed_reason_text, cycle2.status = "other", SECRET_TEXTS[0], "missed"
    _timepoint(factory, p1, "sys-c3", dt.date(2026, 3, 12), [C30, EQ5D], anchor_number=3)  # open now
    _timepoint(
        factory,
        p1,
        "sys-c9",
        dt.date(2026, 2, 10),
        [C30],
        status="cancelled",
        status_changed_at=dt.datetime(2026, 2, 1, tzinfo=UTC),
        cancel_reason="cycle deleted",
    )
    diary = _timepoint(factory, p1, "diary-2026-01-15", dt.date(2026, 1, 15), [DIARY])
    raised = _fill(
        session, p1, diary, DIARY, {"seizure": 1, "headache": 1}, dt.datetime(2026, 1, 15, 3, tzinfo=UTC)
    ).alert
    assert raised is not None and raised.level == "red"
    alerts.acknowledge(
        session,
        Actor("staff", str(nurse.id)),
        raised,
        nurse,
        SECRET_TEXTS[2] + " on 13912345678",
        dt.datetime(2026, 1, 15, 5, tzinfo=UTC),
    )

    base2 = _timepoint(factory, p2, "baseline", dt.date(2026, 1, 20), [C30, EQ5D])
    _fill(session, p2, base2, C30, C30_ANSWERS, dt.datetime(2026, 1, 19, 1, tzinfo=UTC))
    _timepoint(
        factory,
        p2,
        "sys-c1",
        dt.date(2026, 3, 5),
        [C30, EQ5D],
        status="not_expected",
        not_expected_reason="died",
        status_changed_at=dt.datetime(2026, 2, 26, tzinfo=UTC),
    )
    p2.patient.status, p2.patient.status_date = "died", dt.date(2026, 2, 25)
    session.flush()

    needles = [
        s1.name,
        s2.name,
        "021-6666-1234",
        "0991-777-4321",
        *SECRET_TEXTS,
        nurse.full_name,
        nurse.email,
        "13700001111",
        stat.full_name,
        stat.email,
        "13600002222",
        admin.full_name,
        admin.email,
        inv.full_name,
        inv.email,
        nurse.username,
        stat.username,
        "li.na.patient@example.com",
        "13912345678",
        "zhang.wei@example.net",
        "8765 4321",
        p1.token,
        p2.token,
        p1.patient.link_token_hash,
        p2.patient.link_token_hash,
        "739164",
        "582046",
        "Li Na",
        "Zhang Wei",
        "Hangzhou",
        "Auntie",
    ]
    return Trial(nurse, stat, admin, inv, needles)


def export(session, tmp_path: Path, *, formats=("csv",), as_of=None, name="out", settings=None, **kw):
    request = ExportRequest(
        formats=tuple(formats),
        filters=kw.pop("filters", ExportFilters()),
        as_of=as_of or dt.datetime(2026, 3, 10, 4, tzinfo=UTC),
        **kw,
    )
    return run_export(
        session,
        request,
        tmp_path / name,
        actor=Actor.system("tests"),
        now=dt.datetime(2026, 3, 10, 4, tzinfo=UTC),
        settings=settings or ExportSettings(),
    )


def read_csv(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(archive.read(name)), dtype=str, keep_default_na=False)
