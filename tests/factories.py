"""Builders for test data through the real services (so audit rows and hashes are real too)."""
from __future__ import annotations

import datetime as dt
import itertools

from qol_app.models import Site, SiteMembership, StaffUser
from qol_app.passwords import hash_secret
from qol_app.services.audit import Actor
from qol_app.services.enrolment import Enrolled, enroll_patient

_seq = itertools.count(1)
STAFF_PASSWORD = "correct horse battery"


class Factory:
    def __init__(self, session, now: dt.datetime) -> None:
        self.session = session
        self.now = now
        self.actor = Actor.system("tests")

    def site(self, code: str | None = None, tz: str = "Asia/Shanghai", **kw) -> Site:
        n = next(_seq)
        site = Site(code=code or f"T{n:02d}", name=kw.pop("name", f"Test site {n}"), timezone=tz,
                    default_language=kw.pop("default_language", "zh_Hans"),
                    emergency_phone=kw.pop("emergency_phone", "120"), **kw)
        self.session.add(site)
        self.session.flush()
        return site

    def staff(self, role: str = "nurse", sites: list[Site] = (), username: str | None = None, **kw) -> StaffUser:
        user = StaffUser(username=username or f"{role}{next(_seq)}", full_name=kw.pop("full_name", f"Test {role}"),
                         role=role, password_hash=hash_secret(STAFF_PASSWORD), **kw)
        user.memberships = [SiteMembership(site_id=s.id) for s in sites]
        self.session.add(user)
        self.session.flush()
        return user

    def patient(self, site: Site | None = None, *, arm: str = "A", language: str = "zh_Hans",
                randomization_date: dt.date | None = None, pin: str | None = "123456", **kw) -> Enrolled:
        site = site or self.site()
        n = next(_seq)
        return enroll_patient(
            self.session, self.actor, study_id=kw.pop("study_id", f"{site.code}-{n:03d}"), site=site, arm=arm,
            randomization_date=randomization_date or self.now.date(), language=language, now=self.now,
            with_pin=pin is not None, pin=pin, **kw,
        )
