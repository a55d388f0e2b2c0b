"""Throttling failed staff sign-ins per account and per client address, in the database.

The counters live in ``signin_throttles`` and move with single conditional UPDATEs, so every
worker process (and every machine behind the load balancer) counts the same failures. After
``account_max`` failures of one username, or ``address_max`` from one address, within
``window``, that account or address is refused (even with the right password) for
``lock``. A success clears the account's count, never the address's (one good account must not
open the door for guessing others). Unknown usernames are throttled like real ones, so the
answer tells nothing about which accounts exist. Successes, failures and lock-outs are audited
by the caller (:func:`audit_attempt`). Services flush; the caller commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qol_app.models import SignInThrottle, StaffUser
from qol_app.services import audit
from qol_app.services.audit import Actor

T = SignInThrottle


@dataclasses.dataclass(frozen=True)
class ThrottleSettings:
    account_max: int = 5
    address_max: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    lock: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ThrottleSettings:
        return cls(
            account_max=int(config.get("STAFF_MAX_FAILURES", cls.account_max)),
            address_max=int(config.get("STAFF_ADDRESS_MAX_FAILURES", cls.address_max)),
            window=dt.timedelta(minutes=int(config.get("STAFF_FAILURE_WINDOW_MINUTES", 15))),
            lock=dt.timedelta(minutes=int(config.get("STAFF_LOCK_MINUTES", 15))),
        )


def account_key(username: str) -> str:
    return username.strip().lower()[:255]


def locked_until(session: Session, *, username: str, address: str, now: dt.datetime) -> dt.datetime | None:
    """When the account or the address may try again, if either is locked now."""
    rows = session.scalars(
        select(T.locked_until).where(
            ((T.scope == "account") & (T.key == account_key(username)))
            | ((T.scope == "address") & (T.key == address[:255])),
            T.locked_until > now,
        )
    ).all()
    times = [t for t in rows if t is not None]  # all are (locked_until > now); narrows the type
    return max(times) if times else None


def _bump(session: Session, scope: str, key: str, now: dt.datetime, window: dt.timedelta) -> int:
    """Count one failure (a new window when the old one has passed); returns the count."""
    stale = T.window_started_at <= now - window
    stmt = (
        update(T)
        .where(T.scope == scope, T.key == key)
        .values(
            failures=case((stale, 1), else_=T.failures + 1),
            window_started_at=case((stale, now), else_=T.window_started_at),
        )
        .returning(T.failures)
        .execution_options(synchronize_session=False)
    )
    count = session.execute(stmt).scalar()
    if count is not None:
        return count
    try:
        with session.begin_nested():
            session.execute(insert(T).values(scope=scope, key=key, failures=1, window_started_at=now))
        return 1
    except IntegrityError:  # another worker inserted it meanwhile
        return session.execute(stmt).scalar_one()


def _lock(session: Session, scope: str, key: str, until: dt.datetime, now: dt.datetime) -> None:
    session.execute(
        update(T)
        .where(T.scope == scope, T.key == key)
        .values(locked_until=until, failures=0, window_started_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclasses.dataclass(frozen=True)
class Failure:
    account_failures: int
    address_failures: int
    locked_until: dt.datetime | None  # set when this failure locked the account or the address
    locked_scopes: tuple[str, ...] = ()


def record_failure(
    session: Session, *, username: str, address: str, now: dt.datetime, settings: ThrottleSettings
) -> Failure:
    """Count a failed sign-in for the username and the address; lock what reached its limit."""
    user_key, addr_key = account_key(username), address[:255]
    account = _bump(session, "account", user_key, now, settings.window)
    by_address = _bump(session, "address", addr_key, now, settings.window)
    until = now + settings.lock
    locked: list[str] = []
    if account >= settings.account_max:
        _lock(session, "account", user_key, until, now)
        locked.append("account")
    if by_address >= settings.address_max:
        _lock(session, "address", addr_key, until, now)
        locked.append("address")
    return Failure(account, by_address, until if locked else None, tuple(locked))


def record_success(session: Session, *, username: str, now: dt.datetime) -> None:
    """Clear the account's failure count (the address keeps its own)."""
    session.execute(
        update(T)
        .where(
            T.scope == "account",
            T.key == account_key(username),
            or_(T.locked_until.is_(None), T.locked_until <= now),
        )
        .values(failures=0)
        .execution_options(synchronize_session=False)
    )


def audit_attempt(
    session: Session,
    actor: Actor,
    action: str,
    *,
    user: StaffUser | None,
    address: str,
    now: dt.datetime,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Audit a sign-in event (``staff_sign_in``, ``staff_sign_in_failed``, ``staff_sign_in_locked``...).

    The username typed is recorded only when it names an account: people type passwords into
    the username field, and the trail is kept for ever.
    """
    audit.record(
        session,
        actor,
        action,
        entity_type="staff_users",
        entity_id=user.id if user is not None else None,
        new={"address": address, **(detail or {}), **({"username": user.username} if user is not None else {})},
        now=now,
    )
