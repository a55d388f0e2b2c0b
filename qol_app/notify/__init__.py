"""Outbound messages: delivery channels (e-mail, SMS gateways) and quiet hours.

What to send and when lives in :mod:`qol_app.services.notifications`; this package only knows
how to hand a rendered message to the outside world, and when a patient may be disturbed.
"""

from qol_app.notify.channels import (
    MAIL_BACKENDS,
    SMS_GATEWAYS,
    Channel,
    DeliveryError,
    Outgoing,
    Receipt,
    build_channels,
    log_only_channels,
    register_mail_backend,
    register_sms_gateway,
)
from qol_app.notify.quiet_hours import QuietHours, next_allowed, parse_hhmm

__all__ = [
    "MAIL_BACKENDS",
    "SMS_GATEWAYS",
    "Channel",
    "DeliveryError",
    "Outgoing",
    "QuietHours",
    "Receipt",
    "build_channels",
    "log_only_channels",
    "next_allowed",
    "parse_hhmm",
    "register_mail_backend",
    "register_sms_gateway",
]
