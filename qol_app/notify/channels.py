"""Delivery channels and the registries that pick a backend by name.

Two channels deliver, matching ``OutboxMessage.channel``:

* ``email``: a *mail backend* chosen by ``MAIL_BACKEND`` (``smtp`` or the dev ``outbox``).
* ``sms``: an *SMS gateway* chosen by ``SMS_BACKEND``: ``alibaba`` (Alibaba Cloud SMS),
  ``tencent`` (Tencent Cloud SMS), ``webhook`` (a generic HTTPS endpoint) or the dev
  ``outbox``; see :mod:`qol_app.notify.sms`.

Call tasks (channel ``task``) are never delivered: they are work on the nurses' list.

A channel returns a :class:`Receipt` (the provider's message id) or raises
:class:`DeliveryError` (with the provider's code, and whether a retry can help). The dev
``outbox`` backends only log and say so (``Receipt(delivered=False)``): a development install
never texts a real patient, and its outbox shows "logged, not delivered".

Adding another SMS gateway needs no change here::

    # mysite/sms.py
    from qol_app.notify.channels import DeliveryError, Receipt, register_sms_gateway

    @register_sms_gateway("acme")
    class AcmeGateway:
        def __init__(self, config):            # the Flask app.config mapping
            self.key = config["ACME_SMS_KEY"]

        def send(self, message):               # an Outgoing: recipient, body, template, params
            ...                                # raise DeliveryError(...) on failure
            return Receipt(provider_id="...")

then set ``QOL_SMS_BACKEND=mysite.sms:AcmeGateway`` (a ``module:attribute`` path is imported
on demand), or import ``mysite.sms`` somewhere and use ``QOL_SMS_BACKEND=acme``. The older
``send_sms(to, text, *, message_id)`` form is still accepted. ``message.dedupe_key`` is the
outbox key: pass it to gateways that de-duplicate by client reference.
"""

from __future__ import annotations

import email.utils
import importlib
import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any

from qol_app.notify.base import (
    MAIL_BACKENDS,
    SMS_GATEWAYS,
    Channel,
    DeliveryError,
    MailBackend,
    Outgoing,
    Receipt,
    register_mail_backend,
    register_sms_gateway,
)

log = logging.getLogger("qol_app.notify")

__all__ = [
    "MAIL_BACKENDS",
    "SMS_GATEWAYS",
    "Channel",
    "DeliveryError",
    "Outgoing",
    "Receipt",
    "build_channels",
    "log_only_channels",
    "register_mail_backend",
    "register_sms_gateway",
]


# ---- mail ---------------------------------------------------------------------------------
@register_mail_backend("outbox")
class LogMailBackend:
    """Development: log the message instead of sending it."""

    #: Delivers nothing: the dashboard warns, and ``qol check`` refuses it in production.
    LOG_ONLY = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        pass

    def send_mail(self, message: EmailMessage) -> Receipt:
        log.info("outbox e-mail to %s: %s", message["To"], message["Subject"])
        return Receipt(delivered=False)


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

    def send_mail(self, message: EmailMessage) -> Receipt:
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
        return Receipt(provider_id=str(message["Message-ID"]))


class EmailChannel:
    """Builds the RFC 5322 message; the backend decides how it leaves the building."""

    def __init__(self, backend: MailBackend, sender: str, domain: str = "qol.local") -> None:
        self.backend = backend
        self.sender = sender
        self.domain = domain

    def deliver(self, message: Outgoing) -> Receipt | None:
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
        return self.backend.send_mail(mail)


# ---- SMS ----------------------------------------------------------------------------------
@register_sms_gateway("outbox")
class LogSmsGateway:
    """Development: log the text instead of sending it (never reaches a phone)."""

    #: Delivers nothing: the dashboard warns, and ``qol check`` refuses it in production.
    LOG_ONLY = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        pass

    def send(self, message: Outgoing) -> Receipt:
        log.info("outbox SMS to %s (%s): %s", message.recipient, message.dedupe_key, message.body)
        return Receipt(delivered=False)


class SmsChannel:
    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def deliver(self, message: Outgoing) -> Receipt | None:
        if not message.recipient:
            raise DeliveryError("no phone number", permanent=True)
        send = getattr(self.gateway, "send", None)
        if send is not None:
            return send(message)
        self.gateway.send_sms(message.recipient, message.body, message_id=message.dedupe_key)
        return None


# ---- wiring -------------------------------------------------------------------------------
def _resolve(registry: Mapping[str, Callable[..., Any]], name: str, setting: str) -> Callable[..., Any]:
    if name in registry:
        return registry[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    raise ValueError(f"{setting}={name!r} is unknown (known: {', '.join(sorted(registry))}, or module:attribute)")


def _factories(config: Mapping[str, Any]) -> dict[str, Callable[..., Any]]:
    import qol_app.notify.sms  # noqa: F401 - registers the real gateways

    return {
        "email": _resolve(MAIL_BACKENDS, str(config.get("MAIL_BACKEND") or "outbox"), "MAIL_BACKEND"),
        "sms": _resolve(SMS_GATEWAYS, str(config.get("SMS_BACKEND") or "outbox"), "SMS_BACKEND"),
    }


def build_channels(config: Mapping[str, Any]) -> dict[str, Channel]:
    """The channel for each deliverable ``OutboxMessage.channel`` value, built from the app config."""
    factories = _factories(config)
    sender = str(config.get("MAIL_SENDER") or "qol@localhost")
    domain = sender.rpartition("@")[2] or "qol.local"
    return {
        "email": EmailChannel(factories["email"](config), sender, domain),
        "sms": SmsChannel(factories["sms"](config)),
    }


def log_only_channels(config: Mapping[str, Any]) -> list[str]:
    """The channels whose configured backend only logs (``email``, ``sms``), without building them."""
    try:
        factories = _factories(config)
    except (ValueError, ImportError, AttributeError):
        return []  # a broken setting is reported where the channels are built
    return [name for name, factory in factories.items() if getattr(factory, "LOG_ONLY", False)]
