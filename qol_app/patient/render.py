"""View models for patient templates: plain values in the patient's language, no logic in Jinja."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from flask import current_app, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.i18n import local_date, select_locale
from qol_app.instruments import LocalizedInstrument
from qol_app.instruments.wording import LocalizedItem
from qol_app.models import Alert, Patient, Response, Timepoint
from qol_app.services import responses as svc


def diary_day(target: dt.date, locale: str) -> str:
    """ "Diary for Tuesday 1 December": the day a diary is about, weekday first (late diaries too)."""
    from babel.dates import format_date, format_skeleton

    if locale.startswith("en"):
        day = format_date(target, "EEEE d MMMM", locale=locale)
    else:
        day = format_skeleton("MMMMEEEEd", target, locale=locale)
    return _("Diary for %(day)s", day=day)


def safety(patient: Patient) -> dict[str, str]:
    """Phone numbers for the "not watched around the clock" note on every signed-in page."""
    return patient.site.safety_numbers()


def deadline_text(tp: Timepoint, now: dt.datetime, locale: str) -> str:
    """The one way a deadline is said (CLINICAL.md §3, issue 14): "please answer by <last on-time
    day>" while the window is open, then "late, still accepted until <last day of grace>".
    Both are the patient's local calendar days (``window_end``, ``grace_end``)."""
    if now < tp.closes_at:
        return _("Please answer by %(date)s", date=local_date(tp.window_end, locale))
    return _("Late, still accepted until %(date)s", date=local_date(tp.grace_end, locale))


@dataclasses.dataclass(frozen=True)
class DueItem:
    heading: str
    forms: list[tuple[str, bool]]  # (title, submitted?)
    until: str  # deadline_text()
    late: bool
    started: bool
    url: str


def home_items(session: Session, patient: Patient, tps: list[Timepoint], now: dt.datetime) -> list[DueItem]:
    locale = select_locale()
    reg = svc.registry()
    statuses: dict[int, dict[str, str]] = {tp.id: {} for tp in tps}
    if tps:
        rows = session.execute(
            select(Response.timepoint_id, Response.instrument_id, Response.status).where(
                Response.timepoint_id.in_(list(statuses)), Response.revision == 0
            )
        )
        for timepoint_id, instrument_id, status in rows:
            statuses[timepoint_id][instrument_id] = status
    instruments = [reg.get(i) for i in dict.fromkeys(i for tp in tps for i in tp.instruments)]
    titles = {i.id: texts.title for i, texts in zip(instruments, svc.localized_many(session, instruments, locale))}
    items = []
    for tp in tps:
        forms = [(titles[i], statuses[tp.id].get(i) == "submitted") for i in tp.instruments]
        if tp.kind == "diary":
            heading = diary_day(tp.target_date, locale)
        else:
            heading = _("Questionnaires")
        items.append(
            DueItem(
                heading,
                forms,
                deadline_text(tp, now, locale),
                now >= tp.closes_at,
                bool(statuses[tp.id]),
                url_for("patient.start", timepoint_id=tp.id),
            )
        )
    return items


@dataclasses.dataclass(frozen=True)
class FieldView:
    """One item as a survey page shows it: text and number, the value to pre-fill, the first error.

    Plain values rather than bound WTForms fields: the page is rendered from them on every GET
    without building a form (WTForms validates the POST).
    """

    item: LocalizedItem
    number: int
    value: str
    error: str | None


def field_views(
    texts: LocalizedInstrument,
    item_ids: Sequence[str],
    numbers: Mapping[str, int],
    values: Mapping[str, str],
    errors: Mapping[str, Sequence[str]],
) -> list[FieldView]:
    """``values``: what to pre-fill per item id (saved, kept or posted text); ``errors``: WTForms' errors."""
    views = []
    for item_id in item_ids:
        problems = errors.get(item_id)
        views.append(
            FieldView(
                texts.item(item_id), numbers[item_id], values.get(item_id) or "", str(problems[0]) if problems else None
            )
        )
    return views


#: Rendered items keyed by the identity of the (cached, immutable) localized item and the state
#: shown; the item is kept alongside so its id cannot be reused while the entry lives.
_ITEM_HTML: dict[tuple[int, int, str], tuple[LocalizedItem, Markup]] = {}
_ITEM_HTML_MAX = 4096


def item_html(view: FieldView) -> Markup:
    """The item rendered by its macro (``macros/fields.html``).

    Memoised when the result depends only on the item and a choice between its codes (most
    page views), since rendering a macro per item per request dominated the page's cost.
    """
    cacheable = view.error is None and (view.value == "" or view.value in _codes(view.item))
    key = (id(view.item), view.number, view.value)
    hit = _ITEM_HTML.get(key) if cacheable else None
    if hit is not None and hit[0] is view.item:
        return hit[1]
    env = current_app.jinja_env
    html = env.get_template("macros/fields.html").module.item_field(view)  # type: ignore[attr-defined]  # a macro
    if cacheable and not env.auto_reload:
        if len(_ITEM_HTML) >= _ITEM_HTML_MAX:
            _ITEM_HTML.clear()
        _ITEM_HTML[key] = (view.item, html)
    return html


def _codes(item: LocalizedItem) -> tuple[str, ...]:
    return tuple(str(option.code) for option in item.options)


@dataclasses.dataclass(frozen=True)
class ReviewRow:
    number: int
    text: str
    answer: str | None  # None: skipped or not answered
    state: str  # answered, skipped, open


@dataclasses.dataclass(frozen=True)
class ReviewPage:
    number: int
    title: str
    rows: list[ReviewRow]
    url: str


def answer_label(survey: Any, item_id: str, value: float) -> str:
    item = survey.instrument.item(item_id)
    if item.kind == "choice":
        return survey.texts.option_label(item_id, int(value))
    text = f"{value:g}"
    return f"{text} {item.unit}" if item.unit else text


def review_rows(
    session: Session,
    survey: Any,
    numbers: Mapping[tuple[str, int], int] | None = None,
    *,
    only_missing: bool = False,
) -> list[ReviewPage]:
    """The form's pages with their answers; ``numbers`` maps (instrument, page) to the page's number
    in the visit; ``only_missing`` keeps only items left out or not answered (pages without any
    are dropped)."""
    rows = svc.answers_of(session, survey.response) if survey.response is not None else {}
    pages = []
    for plan in survey.plans:
        entries = []
        for item_id in plan.item_ids:
            row = rows.get(item_id)
            value = svc.typed_value(survey.instrument, item_id, row)
            state = "open" if row is None else ("skipped" if value is None else "answered")
            if only_missing and state == "answered":
                continue
            entries.append(
                ReviewRow(
                    svc.item_number(survey.instrument, item_id),
                    survey.texts.item(item_id).text,
                    None if value is None else answer_label(survey, item_id, value),
                    state,
                )
            )
        if only_missing and not entries:
            continue
        pages.append(
            ReviewPage(
                (numbers or {}).get((survey.instrument.id, plan.number), plan.number),
                survey.texts.page(plan.page_id).title_for(plan.item_ids),
                entries,
                url_for(
                    "patient.page", timepoint_id=survey.tp.id, instrument_id=survey.instrument.id, page_no=plan.number
                ),
            )
        )
    return pages


def emergency_context(patient: Patient, alert: Alert) -> dict[str, Any]:
    """What the red-alert page needs: the numbers to call and, in plain words, why."""
    from qol_app.services.alerts import rule_set

    locale = select_locale()
    rules = rule_set()
    reasons = []
    for entry in alert.rules:
        if entry.get("level") != "red":
            continue
        try:
            reasons.append(rules.rule(entry["id"]).description(locale))
        except KeyError:
            continue
    return {"reasons": reasons, **safety(patient)}
