"""Real SMS gateways: Alibaba Cloud SMS, Tencent Cloud SMS and a generic HTTPS webhook.

Chinese providers send only *pre-approved templates*: a deployment registers, once, a template
per message kind and language with its provider (the texts to register are in the README) and
a signature name, then sets

* ``SMS_SIGN_NAME``: the approved signature (签名), e.g. ``复旦肿瘤``;
* ``SMS_TEMPLATES``: ``{"reminder": {"zh_Hans": "SMS_1234", "en": "SMS_5678"}, "alert": {...}}``
  (a dict in ``instance/config.py``, or JSON in ``QOL_SMS_TEMPLATES``);
* ``SMS_TEMPLATE_PARAMS`` (optional): the parameter names each template takes, in order
  (Tencent's ``{1}``, ``{2}`` ... are positional; Alibaba's ``${name}`` are named). Defaults in
  :data:`DEFAULT_TEMPLATE_PARAMS`.

Which library, and why:

* **Tencent Cloud SMS** goes through Tencent's official SDK (``tencentcloud-sdk-python-sms``):
  it is released weekly, needs only ``requests``, signs with TC3-HMAC-SHA256 and takes an
  endpoint and scheme, so tests can point it at a loopback server.
* **Alibaba Cloud SMS** uses the documented RPC API (``SendSms``, version 2017-05-25, HMAC-SHA1
  signature) through ``requests``. The official SDK (``alibabacloud_dysmsapi20170525``) pulls
  in aiohttp, websocket-client, APScheduler and the Tea runtime, and signs with its newer
  ACS3 scheme by default; twenty lines of documented signing are easier to keep right.
* The **webhook** posts JSON to any HTTPS endpoint (an in-house SMS relay, a carrier's HTTP
  API behind a small adapter), signed with HMAC-SHA256 over ``timestamp.body``.

Every gateway returns the provider's message id and raises
:class:`~qol_app.notify.channels.DeliveryError` with the provider's code. Errors a retry cannot
fix (invalid number, template or signature not approved, rate limit for this number) are
``permanent``: the outbox then falls back to the patient's next channel at once. Network
failures and provider-side errors are retried.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from qol_app.notify.base import DeliveryError, Outgoing, Receipt, register_sms_gateway

#: Parameter names each template takes, in order (override with ``SMS_TEMPLATE_PARAMS``).
#: ``reminder``: ``due`` (the deadline, local), ``token`` (the reminder link's token: providers
#: refuse links in parameters, so the approved text carries ``<PUBLIC_BASE_URL>/p/r/`` itself),
#: ``phone`` (the site's number). ``alert``: ``patient`` (study id), ``level``.
DEFAULT_TEMPLATE_PARAMS: dict[str, tuple[str, ...]] = {
    "reminder": ("due", "token", "phone"),
    "alert": ("patient", "level"),
}
TIMEOUT_SECONDS = 10.0


def _mapping(value: Any, setting: str) -> Mapping[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{setting} must be JSON, got {value[:40]!r}") from exc
    if not isinstance(value, Mapping):
        raise ValueError(f"{setting} must be a mapping")
    return value


class _TemplateGateway:
    """What the two template providers share: the template id and parameters for a message."""

    provider = "sms"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.sign_name = str(config.get("SMS_SIGN_NAME") or "")
        self.templates = _mapping(config.get("SMS_TEMPLATES"), "SMS_TEMPLATES")
        names = dict(DEFAULT_TEMPLATE_PARAMS)
        names.update(
            {k: tuple(v) for k, v in _mapping(config.get("SMS_TEMPLATE_PARAMS"), "SMS_TEMPLATE_PARAMS").items()}
        )
        self.param_names = names
        self.timeout = float(config.get("SMS_TIMEOUT") or TIMEOUT_SECONDS)
        self.country_code = str(config.get("SMS_DEFAULT_COUNTRY_CODE") or "86")

    def template_for(self, message: Outgoing) -> tuple[str, list[tuple[str, str]]]:
        """``(template id, [(name, value)...])``; a missing template is a permanent error."""
        name = message.template or "reminder"
        by_language = self.templates.get(name) or {}
        template_id = by_language.get(message.language) if isinstance(by_language, Mapping) else None
        if not template_id:
            raise DeliveryError(
                f"{self.provider}: no SMS template configured for {name!r} in {message.language!r} (SMS_TEMPLATES)",
                permanent=True,
                code="config.NO_TEMPLATE",
            )
        if not self.sign_name:
            raise DeliveryError(f"{self.provider}: SMS_SIGN_NAME is not set", permanent=True, code="config.NO_SIGN")
        params = [(key, str(message.params.get(key, ""))) for key in self.param_names.get(name, ())]
        return str(template_id), params

    def e164(self, number: str) -> str:
        """``+<country><number>``: a number without ``+`` or ``00`` is taken as domestic."""
        digits = re.sub(r"[\s()\-.]", "", number or "")
        if digits.startswith("+"):
            return digits
        if digits.startswith("00"):
            return "+" + digits[2:]
        return f"+{self.country_code}{digits.lstrip('0') if self.country_code != '86' else digits}"


# ---- Alibaba Cloud SMS ---------------------------------------------------------------------
def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba's RPC signature wants it (space %20, ``*`` %2A, ``~`` kept)."""
    return urllib.parse.quote(str(value), safe="~")


def alibaba_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Alibaba Cloud RPC signature V1 (HMAC-SHA1 over the sorted, encoded query)."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


#: Alibaba codes worth retrying (the provider's side, not the request).
ALIBABA_TRANSIENT = {"isp.SYSTEM_ERROR", "ServiceUnavailable", "InternalError", "Throttling", "Throttling.User"}


@register_sms_gateway("alibaba")
class AlibabaSmsGateway(_TemplateGateway):
    """Alibaba Cloud SMS ``SendSms`` (RPC API 2017-05-25), POSTed as a signed form.

    Settings: ``ALIBABA_SMS_ACCESS_KEY_ID``, ``ALIBABA_SMS_ACCESS_KEY_SECRET``,
    ``ALIBABA_SMS_ENDPOINT`` (default ``https://dysmsapi.aliyuncs.com/``), ``ALIBABA_SMS_REGION``
    (``cn-hangzhou``), plus the template settings of the module doc.
    """

    provider = "alibaba"
    VERSION = "2017-05-25"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.key_id = str(config.get("ALIBABA_SMS_ACCESS_KEY_ID") or "")
        self.key_secret = str(config.get("ALIBABA_SMS_ACCESS_KEY_SECRET") or "")
        self.endpoint = str(config.get("ALIBABA_SMS_ENDPOINT") or "https://dysmsapi.aliyuncs.com/")
        self.region = str(config.get("ALIBABA_SMS_REGION") or "cn-hangzhou")

    def phone_number(self, number: str) -> str:
        """Mainland numbers as 11 digits; others as country code + number without ``+``."""
        full = self.e164(number)
        return full[3:] if full.startswith("+86") else full[1:]

    def request_params(self, message: Outgoing, now: dt.datetime | None = None, nonce: str | None = None) -> dict:
        template_id, params = self.template_for(message)
        now = now or dt.datetime.now(dt.UTC)
        values = {
            "AccessKeyId": self.key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": self.phone_number(message.recipient or ""),
            "RegionId": self.region,
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template_id,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, separators=(",", ":")),
            "Timestamp": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": self.VERSION,
            "OutId": message.dedupe_key[:64],
        }
        values["Signature"] = alibaba_signature("POST", values, self.key_secret)
        return values

    def send(self, message: Outgoing) -> Receipt:
        form = self.request_params(message)
        try:
            response = requests.post(self.endpoint, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"alibaba: {type(exc).__name__}: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = str(body.get("Code") or f"HTTP {response.status_code}")
        if response.status_code == 200 and code == "OK":
            return Receipt(provider_id=str(body.get("BizId") or "") or None)
        transient = response.status_code >= 500 or code in ALIBABA_TRANSIENT
        text = body.get("Message") or response.text[:120]
        raise DeliveryError(f"alibaba {code}: {text}", permanent=not transient, code=code)


# ---- Tencent Cloud SMS ---------------------------------------------------------------------
#: Tencent codes worth retrying.
TENCENT_TRANSIENT_PREFIXES = ("InternalError", "ClientNetworkError", "ServerNetworkError", "RequestLimitExceeded")


@register_sms_gateway("tencent")
class TencentSmsGateway(_TemplateGateway):
    """Tencent Cloud SMS ``SendSms`` (API 2021-01-11) through Tencent's official SDK.

    Settings: ``TENCENT_SMS_SECRET_ID``, ``TENCENT_SMS_SECRET_KEY``, ``TENCENT_SMS_SDK_APP_ID``
    (the SmsSdkAppId of the console), ``TENCENT_SMS_REGION`` (``ap-guangzhou``),
    ``TENCENT_SMS_ENDPOINT`` (``sms.tencentcloudapi.com``) and ``TENCENT_SMS_SCHEME`` (``https``),
    plus the template settings of the module doc.
    """

    provider = "tencent"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.secret_id = str(config.get("TENCENT_SMS_SECRET_ID") or "")
        self.secret_key = str(config.get("TENCENT_SMS_SECRET_KEY") or "")
        self.app_id = str(config.get("TENCENT_SMS_SDK_APP_ID") or "")
        self.region = str(config.get("TENCENT_SMS_REGION") or "ap-guangzhou")
        self.endpoint = str(config.get("TENCENT_SMS_ENDPOINT") or "sms.tencentcloudapi.com")
        self.scheme = str(config.get("TENCENT_SMS_SCHEME") or "https")

    def _client(self):
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        http = HttpProfile(protocol=self.scheme, endpoint=self.endpoint, reqTimeout=int(max(1, self.timeout)))
        profile = ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=http)
        return sms_client.SmsClient(credential.Credential(self.secret_id, self.secret_key), self.region, profile)

    def send(self, message: Outgoing) -> Receipt:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111 import models

        template_id, params = self.template_for(message)
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [self.e164(message.recipient or "")]
        request.SmsSdkAppId = self.app_id
        request.SignName = self.sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = [value for _name, value in params]
        request.SessionContext = message.dedupe_key
        try:
            response = self._client().SendSms(request)
        except TencentCloudSDKException as exc:
            code = exc.get_code() or "TencentCloudSDKException"
            transient = code.startswith(TENCENT_TRANSIENT_PREFIXES)
            raise DeliveryError(
                f"tencent {code}: {exc.get_message()}"[:255], permanent=not transient, code=code
            ) from exc
        statuses: Sequence[Any] = response.SendStatusSet or []
        if not statuses:
            raise DeliveryError("tencent: empty SendStatusSet", code="EmptySendStatusSet")
        status = statuses[0]
        if status.Code != "Ok":
            transient = str(status.Code).startswith(TENCENT_TRANSIENT_PREFIXES)
            raise DeliveryError(f"tencent {status.Code}: {status.Message}", permanent=not transient, code=status.Code)
        return Receipt(provider_id=status.SerialNo or None)


# ---- generic webhook -----------------------------------------------------------------------
def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@register_sms_gateway("webhook")
class WebhookSmsGateway(_TemplateGateway):
    """POST the message as JSON to ``SMS_WEBHOOK_URL``, signed with ``SMS_WEBHOOK_SECRET``.

    Body: ``{"id", "to" (E.164), "text", "language", "template", "params"}``. Headers
    ``X-QOL-Timestamp`` (Unix seconds) and ``X-QOL-Signature`` (:func:`webhook_signature`).
    A 2xx answer is success (a JSON ``{"id": ...}`` is kept as the provider's id); 429 and other
    4xx answers are permanent failures (the JSON ``error`` is recorded); 5xx are retried.
    """

    provider = "webhook"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.url = str(config.get("SMS_WEBHOOK_URL") or "")
        self.secret = str(config.get("SMS_WEBHOOK_SECRET") or "")
        if not self.url:
            raise ValueError("SMS_BACKEND=webhook needs SMS_WEBHOOK_URL")

    def send(self, message: Outgoing) -> Receipt:
        payload = {
            "id": message.dedupe_key,
            "to": self.e164(message.recipient or ""),
            "text": message.body,
            "language": message.language,
            "template": message.template,
            "params": dict(message.params),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json; charset=utf-8", "X-QOL-Timestamp": timestamp}
        if self.secret:
            headers["X-QOL-Signature"] = webhook_signature(self.secret, timestamp, body)
        try:
            response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if 200 <= response.status_code < 300:
            return Receipt(provider_id=str(answer["id"]) if answer.get("id") else None)
        code = str(answer.get("code") or f"HTTP {response.status_code}")
        error = answer.get("error") or response.text[:120]
        raise DeliveryError(f"webhook {code}: {error}", permanent=response.status_code < 500, code=code)


__all__ = [
    "DEFAULT_TEMPLATE_PARAMS",
    "AlibabaSmsGateway",
    "TencentSmsGateway",
    "WebhookSmsGateway",
    "alibaba_signature",
    "percent_encode",
    "webhook_signature",
]
