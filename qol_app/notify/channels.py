"""Delivery channels and the registries that pick a backend by name.

Three channels, matching ``OutboxMessage.channel``:

* ``email``: a *mail backend* chosen by ``MAIL_BACKEND`` (``smtp`` or the dev ``outbox``).
* ``sms``: an *SMS gateway* chosen by ``SMS_BACKEND`` (only the dev ``outbox`` ships).
* ``task``: a call task for the site's nurses; "delivering" it just puts it on their list.

The dev ``outbox`` backends only log: a development install never texts a real patient.

Adding a real SMS gateway (e.g. a Chinese carrier's HTTP API) needs no change here::

    # mysite/sms.py
    from qol_app.notify.channels import DeliveryError, register_sms_gateway

    @register_sms_gateway("acme")
    class AcmeGateway:
        def __init__(self, config):            # the Flask app.config mapping
            self.key = config["ACME_SMS_KEY"]

        def send_sms(self, to, text, *, message_id):
            ...                                # raise DeliveryError(...) on failure

then set ``QOL_SMS_BACKEND=mysite.sms:AcmeGateway`` (a ``module:attribute`` path is imported
on demand), or import ``mysite.sms`` somewhere and use ``QOL_SMS_BACKEND=acme``. ``message_id``
is the outbox dedupe key: pass it to gateways that de-duplicate by client reference.
"""

from __future__ import annotations

import email.utils
import importlib
import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

log = logging.getLogger("qol_app.notify")

__all__ = [
    "MAIL_BACKENDS",
    "SMS_GATEWAYS",
    "Channel",
    "DeliveryError",
    "Outgoing",
    "build_channels",
    "register_mail_backend",
    "register_sms_gateway",
]


class DeliveryError(Exception):
    """A message could not be handed over; ``permanent`` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What a channel needs to deliver one outbox row."""

    dedupe_key: str
    channel: str
    recipient: str | None
    subject: str
    body: str
    language: str


class Channel(Protocol):
    def deliver(self, message: Outgoing) -> None:
        """Hand the message over or raise :class:`DeliveryError`."""


class SmsGateway(Protocol):
    def send_sms(self, to: str, text: str, *, message_id: str) -> None: ...


class MailBackend(Protocol):
    def send_mail(self, message: EmailMessage) -> None: ...


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


# ---- mail ---------------------------------------------------------------------------------
@register_mail_backend("outbox")
class LogMailBackend:
    """Development: log the message instead of sending it."""

    #: Delivers nothing: ``qol check`` refuses it in production.
    log_only = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        pass

    def send_mail(self, message: EmailMessage) -> None:
        log.info("outbox e-mail to %s: %s", message["To"], message["Subject"])


@register_mail_backend("smtp")
class SmtpMailBackend:
    """Plain ``smtplib``: one connection per message (reminders are few, and it keeps no state).

    Settings: ``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USER``/``SMTP_PASSWORD`` (login when a user
    is set), ``SMTP_STARTTLS`` (upgrade with certificate checks), ``SMTP_TIMEOUT`` (seconds).
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.host = config.get("SMTP_HOST") or "127.0.0.1"
        self.port = int(config.get("SMTP_PORT") or 25)
        self.user = config.get("SMTP_USER")
        self.password = config.get("SMTP_PASSWORD")
        self.starttls = bool(config.get("SMTP_STARTTLS"))
        self.timeout = float(config.get("SMTP_TIMEOUT") or 30)

    def send_mail(self, message: EmailMessage) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipient refused: {exc.recipients}", permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc


class EmailChannel:
    """Builds the RFC 5322 message; the backend decides how it leaves the building."""

    def __init__(self, backend: MailBackend, sender: str, domain: str = "qol.local") -> None:
        self.backend = backend
        self.sender = sender
        self.domain = domain

    def deliver(self, message: Outgoing) -> None:
        if not message.recipient:
            raise DeliveryError("no e-mail address", permanent=True)
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = email.utils.formatdate(localtime=False)
        # A stable id lets a receiving server (or a human) see that a retry is the same message.
        mail["Message-ID"] = f"<{message.dedupe_key.replace(':', '.')}@{self.domain}>"
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.body)
        mail["Content-Language"] = message.language.replace("_", "-")  # after set_content, which clears Content-*
        self.backend.send_mail(mail)


# ---- SMS ----------------------------------------------------------------------------------
@register_sms_gateway("outbox")
class LogSmsGateway:
    """Development: log the text instead of sending it (never reaches a phone)."""

    #: Delivers nothing: ``qol check`` refuses it in production.
    log_only = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        pass

    def send_sms(self, to: str, text: str, *, message_id: str) -> None:
        log.info("outbox SMS to %s (%s): %s", to, message_id, text)


class SmsChannel:
    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def deliver(self, message: Outgoing) -> None:
        if not message.recipient:
            raise DeliveryError("no phone number", permanent=True)
        self.gateway.send_sms(message.recipient, message.body, message_id=message.dedupe_key)


# ---- nurse tasks --------------------------------------------------------------------------
class TaskChannel:
    """Call tasks are read from the outbox by the nurse pages; "sent" means "on the list"."""

    def deliver(self, message: Outgoing) -> None:
        log.info("call task queued for nurses: %s", message.subject)


# ---- wiring -------------------------------------------------------------------------------
def _resolve(registry: Mapping[str, Callable[..., Any]], name: str, setting: str) -> Callable[..., Any]:
    if name in registry:
        return registry[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ValueError(f"{setting}={name!r} is unknown (known: {', '.join(sorted(registry))}, or module:attribute)")


def build_channels(config: Mapping[str, Any]) -> dict[str, Channel]:
    """The channel for each ``OutboxMessage.channel`` value, built from the app config."""
    mail = _resolve(MAIL_BACKENDS, str(config.get("MAIL_BACKEND") or "outbox"), "MAIL_BACKEND")(config)
    sms = _resolve(SMS_GATEWAYS, str(config.get("SMS_BACKEND") or "outbox"), "SMS_BACKEND")(config)
    sender = str(config.get("MAIL_SENDER") or "qol@localhost")
    domain = sender.rpartition("@")[2] or "qol.local"
    return {"email": EmailChannel(mail, sender, domain), "sms": SmsChannel(sms), "task": TaskChannel()}
