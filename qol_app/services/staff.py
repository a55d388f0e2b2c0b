"""Staff accounts: create, disable/enable, passwords, site memberships, language.

Shared by the admin pages and ``qol users``. Every change is audited; disabling ends the
account's live sessions on the server at once. Services flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Site, SiteMembership, StaffUser
from qol_app.models.staff import ROLES
from qol_app.passwords import check_password, hash_secret
from qol_app.services import audit
from qol_app.services.audit import Actor
from qol_app.services.sessions import end_all


class StaffError(ServiceError):
    """A request that cannot be applied (duplicate username, weak password, unknown site...)."""


def _check_password(password: str, username: str | None = None) -> None:
    try:
        check_password(password, username=username)
    except ServiceError as exc:
        raise StaffError(exc.msgid, **exc.params) from None


def find_user(session: Session, username: str) -> StaffUser | None:
    return session.scalar(select(StaffUser).where(StaffUser.username == username))


def find_site(session: Session, code: str) -> Site:
    site = session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise StaffError(N_("No site with code %(code)s."), code=code)
    return site


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    now: dt.datetime,
    email: str | None = None,
    phone: str | None = None,
    language: str = "en",
    sites: Sequence[Site] = (),
) -> StaffUser:
    """A new active account with the given memberships (``phone``: for SMS alerts)."""
    username = username.strip()
    if not username:
        raise StaffError(N_("A username is required."))
    if role not in ROLES:
        raise StaffError(N_("Unknown role %(role)s."), role=role)
    if find_user(session, username) is not None:
        raise StaffError(N_("Username %(username)s is taken."), username=username)
    _check_password(password, username)
    email, phone = _clean_contact(email, phone)
    user = StaffUser(
        username=username,
        full_name=full_name.strip() or username,
        role=role,
        email=email,
        phone=phone,
        password_hash=hash_secret(password),
        language=language,
        created_at=now,
    )
    user.memberships = [SiteMembership(site_id=s.id) for s in sites]
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "staff_create",
        user,
        new={
            "username": user.username,
            "role": role,
            "sites": sorted(s.code for s in sites),
            "language": language,
            **({"email": email} if email else {}),
            **({"phone": phone} if phone else {}),
        },
        now=now,
    )
    return user


PHONE = re.compile(r"^\+?[0-9 ()-]{5,32}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _clean_contact(email: str | None, phone: str | None) -> tuple[str | None, str | None]:
    email = (email or "").strip() or None
    phone = (phone or "").strip() or None
    if email is not None and (len(email) > 255 or not EMAIL.match(email)):
        raise StaffError(N_("Not an e-mail address: %(email)s"), email=email)
    if phone is not None and not PHONE.match(phone):
        raise StaffError(N_("Not a phone number: %(phone)s"), phone=phone)
    return email, phone


def set_contact(
    session: Session, actor: Actor, user: StaffUser, *, email: str | None, phone: str | None, now: dt.datetime
) -> bool:
    """Set the account's e-mail and mobile phone (empty clears), audited; True if anything changed.

    ``StaffError`` for a malformed address or number.
    """
    email, phone = _clean_contact(email, phone)
    old, new = {}, {}
    for name, value in (("email", email), ("phone", phone)):
        if getattr(user, name) != value:
            old[name], new[name] = getattr(user, name), value
            setattr(user, name, value)
    if not new:
        return False
    session.flush()
    audit.record(session, actor, "staff_contact", user, old=old, new=new, now=now)
    return True


def set_active(session: Session, actor: Actor, user: StaffUser, active: bool, *, reason: str, now: dt.datetime) -> None:
    """Disable (ending every live session now) or re-enable an account."""
    if user.active == active:
        return
    user.active = active
    if not active:
        end_all(session, "staff", user.id, "disabled", now)
    audit.record(
        session,
        actor,
        "staff_enable" if active else "staff_disable",
        user,
        old={"active": not active},
        new={"active": active},
        reason=reason,
        now=now,
    )


def set_password(
    session: Session,
    actor: Actor,
    user: StaffUser,
    password: str,
    *,
    reason: str,
    now: dt.datetime,
    keep_session: int | None = None,
) -> None:
    """Set a new password; every session of the account ends, but ``keep_session`` (the id of
    the session of the user changing their own password, who stays signed in on that device)."""
    _check_password(password, user.username)
    user.password_hash = hash_secret(password)
    end_all(session, "staff", user.id, "password_reset", now, keep=keep_session)
    audit.record(session, actor, "staff_password", user, reason=reason, now=now)


def add_site(session: Session, actor: Actor, user: StaffUser, site: Site, *, now: dt.datetime) -> bool:
    """Grant access to ``site``; False when the membership already exists."""
    if site.id in user.site_ids:
        return False
    user.memberships.append(SiteMembership(site_id=site.id))
    session.flush()
    audit.record(session, actor, "staff_add_site", user, site_id=site.id, new={"site": site.code}, now=now)
    return True


def remove_site(session: Session, actor: Actor, user: StaffUser, site: Site, *, reason: str, now: dt.datetime) -> bool:
    """Revoke access to ``site`` (takes effect on the next request); False when not a member."""
    membership = next((m for m in user.memberships if m.site_id == site.id), None)
    if membership is None:
        return False
    user.memberships.remove(membership)
    session.flush()
    audit.record(
        session, actor, "staff_remove_site", user, site_id=site.id, old={"site": site.code}, reason=reason, now=now
    )
    return True


def set_language(session: Session, actor: Actor, user: StaffUser, language: str, *, now: dt.datetime) -> None:
    """The staff member's UI language (a preference: audited for completeness, no reason needed)."""
    if language == user.language:
        return
    old = user.language
    user.language = language
    audit.record(session, actor, "staff_language", user, old={"language": old}, new={"language": language}, now=now)


def set_role(session: Session, actor: Actor, user: StaffUser, role: str, *, reason: str, now: dt.datetime) -> None:
    """Change the account's role (its sessions continue; the new role applies on the next request)."""
    if role not in ROLES:
        raise StaffError(N_("Unknown role %(role)s."), role=role)
    if role == user.role:
        return
    old = user.role
    user.role = role
    audit.record(session, actor, "staff_role", user, old={"role": old}, new={"role": role}, reason=reason, now=now)
