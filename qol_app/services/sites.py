"""Sites: create, update and list, shared by the admin page and ``qol sites``.

A site has a code (in study ids and exports), a name, an IANA time zone (windows and diary days
are computed in it), the default language of its patients, the study team's phone and the
emergency number shown with red alerts. Every change is audited; an update needs a reason.
Changing the time zone re-plans the timepoints of the site's patients that follow the site's
zone (answered forms stay where they are). Services flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, Site
from qol_app.scheduling import Schedule
from qol_app.services import audit
from qol_app.services.audit import Actor
from qol_app.services.timepoints import reconcile_patient

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 ()-]{1,30}$")
FIELDS = ["code", "name", "timezone", "default_language", "contact_phone", "emergency_phone"]


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_timezone(name: str) -> bool:
    """``name`` is an IANA time zone key (e.g. Asia/Shanghai), not a file path or an abbreviation."""
    return name in _zones()


def find_site(session: Session, code: str) -> Site | None:
    return session.scalar(select(Site).where(Site.code == code.strip()))


def list_sites(session: Session) -> list[Site]:
    return list(session.scalars(select(Site).order_by(Site.code)))


def _clean(values: dict[str, Any], languages: Sequence[str]) -> dict[str, Any]:
    """Stripped, checked values; ServiceError naming the first bad one."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in FIELDS:
            raise ValueError(f"unknown site field {name!r}")
        out[name] = value.strip() if isinstance(value, str) else value
    if "code" in out and not CODE_RE.match(out["code"] or ""):
        raise ServiceError(N_("A site code is 1 to 16 letters, digits, - or _, starting with a letter or digit."))
    if "name" in out and not (out["name"] and len(out["name"]) <= 255):
        raise ServiceError(N_("A site name is required (at most 255 characters)."))
    if "timezone" in out and not valid_timezone(out["timezone"] or ""):
        raise ServiceError(
            N_("Unknown time zone %(timezone)s (use an IANA name such as Asia/Shanghai)."), timezone=out["timezone"]
        )
    if "default_language" in out and out["default_language"] not in languages:
        raise ServiceError(
            N_("The language must be one of %(languages)s."),
            languages=", ".join(languages),
        )
    if "emergency_phone" in out and not PHONE_RE.match(out["emergency_phone"] or ""):
        raise ServiceError(N_("The emergency number is required and must be a phone number (e.g. 120)."))
    if "contact_phone" in out:
        out["contact_phone"] = out["contact_phone"] or None
        if out["contact_phone"] is not None and not PHONE_RE.match(out["contact_phone"]):
            raise ServiceError(N_("The site phone must be a phone number."))
    return out


def create_site(
    session: Session,
    actor: Actor,
    *,
    code: str,
    name: str,
    timezone: str,
    default_language: str,
    emergency_phone: str,
    contact_phone: str | None = None,
    languages: Sequence[str],
    now: dt.datetime,
) -> Site:
    """A new site; ServiceError when a value is invalid or the code is taken. ``languages``: those offered."""
    values = _clean(
        {
            "code": code,
            "name": name,
            "timezone": timezone,
            "default_language": default_language,
            "emergency_phone": emergency_phone,
            "contact_phone": contact_phone,
        },
        languages,
    )
    if find_site(session, values["code"]) is not None:
        raise ServiceError(N_("Site code %(code)s is taken."), code=values["code"])
    site = Site(**values, created_at=now)
    session.add(site)
    session.flush()
    audit.record(session, actor, "site_create", site, site_id=site.id, new=values, now=now)
    return site


def update_site(
    session: Session,
    actor: Actor,
    site: Site,
    changes: dict[str, Any],
    *,
    reason: str,
    languages: Sequence[str],
    now: dt.datetime,
    schedule: Schedule | None = None,
) -> dict[str, Any]:
    """Apply ``changes`` (any of FIELDS); returns the fields that really changed (empty: nothing to do).

    A reason is required. A new time zone re-plans the site's patients that have no zone of their own.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(N_("A reason is required."))
    values = _clean(changes, languages)
    if "code" in values and values["code"] != site.code:
        other = find_site(session, values["code"])
        if other is not None and other.id != site.id:
            raise ServiceError(N_("Site code %(code)s is taken."), code=values["code"])
    old, new = audit.changes(site, list(values), values)
    if not new:
        return {}
    for name, value in new.items():
        setattr(site, name, value)
    session.flush()
    audit.record(session, actor, "site_update", site, site_id=site.id, old=old, new=new, reason=reason[:255], now=now)
    if "timezone" in new:
        patients = session.scalars(
            select(Patient).where(Patient.site_id == site.id, Patient.timezone.is_(None)).order_by(Patient.id)
        )
        for patient in patients:
            reconcile_patient(
                session, actor, patient, now, reason=f"site time zone changed: {reason}"[:255], schedule=schedule
            )
    return new
