"""What every delivery channel shares: the message handed over, the answer, the error, and the
registries of mail backends and SMS gateways (:mod:`qol_app.notify.channels` re-exports them all;
the shipped SMS gateways in :mod:`qol_app.notify.sms` register themselves here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

__all__ = [
    "MAIL_BACKENDS",
    "SMS_GATEWAYS",
    "Channel",
    "DeliveryError",
    "MailBackend",
    "Outgoing",
    "Receipt",
    "SmsGateway",
    "register_mail_backend",
    "register_sms_gateway",
]


class DeliveryError(Exception):
    """A message could not be handed over; ``permanent`` ones are not retried.

    ``code`` is the provider's error code where it gave one (e.g. ``isv.MOBILE_NUMBER_ILLEGAL``).
    """

    def __init__(self, message: str, *, permanent: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True, slots=True)
class Receipt:
    """A channel's answer: accepted, with the provider's message id; or only logged (dev)."""

    provider_id: str | None = None
    delivered: bool = True


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a channel needs to deliver one outbox row.

    ``body`` is the full text (e-mail, webhook, log); SMS providers that only send pre-approved
    templates get ``template`` (a name such as ``reminder``) and its ``params`` instead.
    """

    dedupe_key: str
    channel: str
    recipient: str | None
    subject: str
    body: str
    language: str
    template: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


class Channel(Protocol):
    def deliver(self, message: Outgoing) -> Receipt | None:
        """Hand the message over or raise :class:`DeliveryError`."""


class SmsGateway(Protocol):
    def send(self, message: Outgoing) -> Receipt | None: ...


class MailBackend(Protocol):
    def send_mail(self, message: EmailMessage) -> Receipt | None: ...


MAIL_BACKENDS: dict[str, Callable[[Mapping[str, Any]], MailBackend]] = {}
SMS_GATEWAYS: dict[str, Callable[[Mapping[str, Any]], SmsGateway]] = {}


def register_mail_backend(name: str):
    """Class decorator: make a mail backend selectable as ``MAIL_BACKEND = name``."""

    def decorator(factory):
        MAIL_BACKENDS[name] = factory
        return factory

    return decorator


def register_sms_gateway(name: str):
    """Class decorator: make an SMS gateway selectable as ``SMS_BACKEND = name``."""

    def decorator(factory):
        SMS_GATEWAYS[name] = factory
        return factory

    return decorator
