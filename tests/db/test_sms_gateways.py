"""Each SMS gateway against a loopback HTTP server that checks the request as the provider
documents it (endpoint, parameters, signature recomputed here, independently of the app) and
answers with the provider's own success and error bodies. A failed SMS falls back to e-mail,
delivered over a real SMTP server on loopback.

Alibaba Cloud SMS: RPC API ``SendSms`` 2017-05-25, signature V1 (HMAC-SHA1 over
``POST&%2F&<encoded sorted query>`` with key ``secret + "&"``). Tencent Cloud SMS: API 3.0
``SendSms`` 2021-01-11, TC3-HMAC-SHA256. Webhook: JSON, HMAC-SHA256 over ``timestamp.body``.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import json
import re
import time
import urllib.parse

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, OutboxMessage, ReminderLink
from qol_app.scheduler.jobs import run_sweep
from qol_app.services import reminder_links, treatment_events
from qol_app.services.audit import Actor
from tests.loopback import Answer, http_server, smtp_server

NOW = dt.datetime(2026, 3, 21, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai; sys-c1 opened today
PHONE = "138 0000 0002"
TEMPLATES = {"reminder": {"zh_Hans": "SMS_ZH_REMINDER", "en": "SMS_EN_REMINDER"}, "alert": {"zh_Hans": "SMS_ZH_ALERT"}}
SIGN = "复旦肿瘤"

# ---- independent reference implementations of the providers' signatures --------------------
UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def rfc3986(text: str) -> str:
    """Alibaba's percentEncode, written out byte by byte as its documentation describes it."""
    return "".join(ch if ch in UNRESERVED else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in text)


def alibaba_expected_signature(params: dict[str, str], secret: str) -> str:
    query = "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in sorted(params.items()) if k != "Signature")
    string_to_sign = "POST&" + rfc3986("/") + "&" + rfc3986(query)
    return base64.b64encode(hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def tc3_expected_signature(secret_key: str, headers: dict[str, str], body: bytes, timestamp: int) -> str:
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{headers['Content-Type']}\nhost:{headers['Host']}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), f"{date}/sms/tc3_request", hashlib.sha256(canonical.encode()).hexdigest()]
    )

    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = sign(sign(sign(("TC3" + secret_key).encode(), date), "sms"), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


# ---- the providers' answers (bodies as their documentation shows them) ----------------------
ALIBABA = {
    "ok": Answer(
        200,
        {
            "Message": "OK",
            "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990",
            "Code": "OK",
            "BizId": "900619746936498440^0",
        },
    ),
    "invalid_number": Answer(
        200,
        {
            "Message": "非法手机号",
            "RequestId": "2184201F-BFB3-446B-B1F2-C746B7BF0657",
            "Code": "isv.MOBILE_NUMBER_ILLEGAL",
        },
    ),
    "rate_limited": Answer(
        200,
        {
            "Message": "触发小时级流控Permits:5",
            "RequestId": "5A1F4C27-0F8A-4A1B-9C1E-4F3D2B8E6A10",
            "Code": "isv.BUSINESS_LIMIT_CONTROL",
        },
    ),
    "template_not_approved": Answer(
        200,
        {
            "Message": "模板不合法(不存在或被拉黑)",
            "RequestId": "0A8C1E57-6B2D-4E3F-9A1B-7C5D3E2F1A0B",
            "Code": "isv.SMS_TEMPLATE_ILLEGAL",
        },
    ),
}
ALIBABA_CODES = {
    "invalid_number": "isv.MOBILE_NUMBER_ILLEGAL",
    "rate_limited": "isv.BUSINESS_LIMIT_CONTROL",
    "template_not_approved": "isv.SMS_TEMPLATE_ILLEGAL",
}


def _tencent_status(code: str, message: str, serial: str = "") -> Answer:
    return Answer(
        200,
        {
            "Response": {
                "SendStatusSet": [
                    {
                        "SerialNo": serial,
                        "PhoneNumber": "+8613800000002",
                        "Fee": 1 if code == "Ok" else 0,
                        "SessionContext": "",
                        "Code": code,
                        "Message": message,
                        "IsoCode": "CN",
                    }
                ],
                "RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279",
            }
        },
    )


TENCENT = {
    "ok": _tencent_status("Ok", "send success", "5000:1045710669157053657849499619"),
    "invalid_number": _tencent_status("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number"),
    "rate_limited": _tencent_status(
        "LimitExceeded.PhoneNumberDailyLimit",
        "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
    ),
    "template_not_approved": Answer(
        200,
        {
            "Response": {
                "Error": {
                    "Code": "FailedOperation.TemplateIncorrectOrUnapproved",
                    "Message": "template is not approved or request content does not match the approved template content",
                },
                "RequestId": "6a2f1c80-5e1d-4b39-8f3e-2c7d9b4e1a55",
            }
        },
    ),
}
TENCENT_CODES = {
    "invalid_number": "InvalidParameterValue.IncorrectPhoneNumber",
    "rate_limited": "LimitExceeded.PhoneNumberDailyLimit",
    "template_not_approved": "FailedOperation.TemplateIncorrectOrUnapproved",
}
WEBHOOK = {
    "ok": Answer(200, {"id": "relay-7f3a"}),
    "invalid_number": Answer(400, {"code": "invalid_number", "error": "not a mobile number"}),
    "rate_limited": Answer(429, {"code": "rate_limited", "error": "too many messages to this number"}),
    "template_not_approved": Answer(422, {"code": "template_not_approved", "error": "template not approved"}),
}
WEBHOOK_CODES = {k: k for k in WEBHOOK if k != "ok"}


# ---- request checks --------------------------------------------------------------------------
def check_alibaba(request, state) -> dict[str, str]:
    assert request.method == "POST" and request.path == "/", (request.method, request.path)
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    params = dict(urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True))
    assert set(params) == {
        "AccessKeyId",
        "Action",
        "Format",
        "OutId",
        "PhoneNumbers",
        "RegionId",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "SignName",
        "TemplateCode",
        "TemplateParam",
        "Timestamp",
        "Version",
    }, sorted(params)
    expected = {
        "AccessKeyId": "LTAI5tTestKeyId",
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": "13800000002",
        "RegionId": "cn-hangzhou",
        "SignName": SIGN,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_ZH_REMINDER",
        "Version": "2017-05-25",
    }
    assert {k: params[k] for k in expected} == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", params["Timestamp"]), params["Timestamp"]
    assert params["SignatureNonce"] and params["SignatureNonce"] not in state["nonces"], "nonce reused"
    state["nonces"].add(params["SignatureNonce"])
    assert params["Signature"] == alibaba_expected_signature(params, "alibaba-test-secret"), "signature mismatch"
    template = json.loads(params["TemplateParam"])
    assert set(template) == {"due", "token", "phone"} and template["phone"] == "120", template
    return template


def check_tencent(request, state) -> dict[str, str]:
    assert request.method == "POST" and request.path == "/", (request.method, request.path)
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == f"127.0.0.1:{state['port']}"
    assert headers["X-TC-Action"] == "SendSms" and headers["X-TC-Version"] == "2021-01-11"
    assert headers["X-TC-Region"] == "ap-guangzhou"
    timestamp = int(headers["X-TC-Timestamp"])
    assert abs(time.time() - timestamp) < 300
    match = re.fullmatch(
        r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d\d-\d\d)/sms/tc3_request, "
        r"SignedHeaders=content-type;host, Signature=([0-9a-f]{64})",
        headers["Authorization"],
    )
    assert match, headers["Authorization"]
    assert match.group(1) == "AKIDtestSecretId"
    assert match.group(3) == tc3_expected_signature("tencent-test-key", headers, request.body, timestamp), "signature"
    body = json.loads(request.body)
    assert body["PhoneNumberSet"] == ["+8613800000002"]
    assert body["SmsSdkAppId"] == "1400000001" and body["SignName"] == SIGN
    assert body["TemplateId"] == "SMS_ZH_REMINDER"
    due, token, phone = body["TemplateParamSet"]
    assert phone == "120" and body["SessionContext"].startswith("tp:")
    return {"due": due, "token": token, "phone": phone}


def check_webhook(request, state) -> dict[str, str]:
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["Content-Type"].startswith("application/json")
    timestamp = request.headers["X-QOL-Timestamp"]
    mac = hmac.new(b"webhook-test-secret", timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-QOL-Signature"] == "sha256=" + mac, "signature mismatch"
    body = json.loads(request.body)
    assert body["to"] == "+8613800000002" and body["language"] == "zh_Hans" and body["template"] == "reminder"
    assert body["id"].startswith("tp:")
    assert "/p/r/" + body["params"]["token"] in body["text"] and body["params"]["link"] in body["text"]
    return body["params"]


PROVIDERS = {
    "alibaba": (check_alibaba, ALIBABA, ALIBABA_CODES),
    "tencent": (check_tencent, TENCENT, TENCENT_CODES),
    "webhook": (check_webhook, WEBHOOK, WEBHOOK_CODES),
}


def configure(app, provider: str, url: str, port: int, smtp_port: int) -> None:
    app.config.update(
        SMS_BACKEND=provider,
        SMS_SIGN_NAME=SIGN,
        SMS_TEMPLATES=json.dumps(TEMPLATES),  # as QOL_SMS_TEMPLATES would give it
        ALIBABA_SMS_ACCESS_KEY_ID="LTAI5tTestKeyId",
        ALIBABA_SMS_ACCESS_KEY_SECRET="alibaba-test-secret",
        ALIBABA_SMS_ENDPOINT=url,
        TENCENT_SMS_SECRET_ID="AKIDtestSecretId",
        TENCENT_SMS_SECRET_KEY="tencent-test-key",
        TENCENT_SMS_SDK_APP_ID="1400000001",
        TENCENT_SMS_ENDPOINT=f"127.0.0.1:{port}",
        TENCENT_SMS_SCHEME="http",
        SMS_WEBHOOK_URL=url + "hook",
        SMS_WEBHOOK_SECRET="webhook-test-secret",
        MAIL_BACKEND="smtp",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_port,
        MAIL_SENDER="conquer@hospital.example",
        REMINDER_CHANNELS=["sms", "email"],
    )


@pytest.fixture
def patient(factory, session):
    p = factory.patient(
        arm="B",
        language="zh_Hans",
        randomization_date=dt.date(2026, 3, 2),
        phone=PHONE,
        email="p@example.org",
        pin=None,
    ).patient
    treatment_events.record_event(
        session,
        Actor("staff", None),
        p,
        kind="systemic_cycle",
        date=dt.date(2026, 3, 4),  # cycle day 21 = 24 March: window 21-27 March
        now=NOW - dt.timedelta(days=1),
    )
    session.commit()
    return p


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("case", ["ok", "invalid_number", "rate_limited", "template_not_approved"])
def test_gateway_request_and_answers_with_email_fallback(app, session, patient, provider, case):
    check, answers, codes = PROVIDERS[provider]
    state = {"nonces": set(), "params": []}

    def answer(request):
        state["params"].append(check(request, state))
        return answers[case]

    with http_server(answer) as server, smtp_server() as (smtp, inbox):
        state["port"] = server.port
        configure(app, provider, server.url, server.port, smtp.port)
        report = run_sweep(app, NOW)
    assert server.problems == [], server.problems
    assert report.ok, report.errors
    assert len(server.requests) == 1
    session.expire_all()
    messages = session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "reminder").order_by(OutboxMessage.id)
    ).all()
    sms = messages[0]
    assert sms.channel == "sms" and sms.recipient == PHONE
    # The token in the SMS is the reminder link's, kept only as a hash.
    (params,) = state["params"]
    token = params["token"]
    assert len(token) >= 22 and token not in sms.body and token not in json.dumps(sms.params)
    link = session.scalars(select(ReminderLink).where(ReminderLink.message_id == sms.id)).one()
    assert link.token_hash == reminder_links.token_hash(token) and link.token_hash != token
    if case == "ok":
        assert [m.channel for m in messages] == ["sms"]
        assert sms.status == "sent" and sms.last_error is None
        assert (
            sms.provider_message_id
            == {
                "alibaba": "900619746936498440^0",
                "tencent": "5000:1045710669157053657849499619",
                "webhook": "relay-7f3a",
            }[provider]
        )
        assert inbox.envelopes == []
        return
    # Failure: recorded with the provider's code, and the e-mail goes out in the same sweep.
    assert sms.status == "failed" and sms.attempts == 1 and sms.provider_message_id is None
    assert codes[case] in sms.last_error, sms.last_error
    fallback = messages[1]
    assert (fallback.channel, fallback.status, fallback.fallback_of_id) == ("email", "sent", sms.id)
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["p@example.org"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    body = mail.get_content()
    assert "请在2026年3月27日前完成" in body
    links = re.findall(r"http://localhost/p/r/([A-Za-z0-9_-]+)", body)
    assert len(links) == 1 and links[0] != token  # the e-mail has its own, newer link
    session.expire_all()
    assert reminder_links.find(session, token, NOW).refused == "superseded"
    assert reminder_links.find(session, links[0], NOW).ok
    queued = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "message_queued", AuditEvent.entity_id == str(fallback.id))
    ).all()
    assert len(queued) == 1 and queued[0].new["fallback_of_id"] == sms.id


def test_provider_side_error_is_retried_not_fallen_back(app, session, patient):
    def answer(request):
        check_alibaba(request, {"nonces": set()})
        return Answer(500, {"Code": "isp.SYSTEM_ERROR", "Message": "系统错误", "RequestId": "X"})

    with http_server(answer) as server, smtp_server() as (smtp, inbox):
        configure(app, "alibaba", server.url, server.port, smtp.port)
        report = run_sweep(app, NOW)
    assert report.steps["outbox"] == {"retry": 1}
    session.expire_all()
    (sms,) = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder")).all()
    assert sms.status == "queued" and "isp.SYSTEM_ERROR" in sms.last_error and inbox.envelopes == []


def test_unreachable_gateway_is_a_transient_failure(app, session, patient):
    from tests.loopback import free_port

    with smtp_server() as (smtp, inbox):
        port = free_port()
        configure(app, "tencent", f"http://127.0.0.1:{port}/", port, smtp.port)
        report = run_sweep(app, NOW)
    assert report.steps["outbox"] == {"retry": 1}
    session.expire_all()
    (sms,) = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "reminder")).all()
    assert sms.status == "queued" and "ClientNetworkError" in sms.last_error


def test_missing_template_fails_with_a_clear_error(app, session, patient):
    with http_server(lambda request: ALIBABA["ok"]) as server, smtp_server() as (smtp, inbox):
        configure(app, "alibaba", server.url, server.port, smtp.port)
        app.config["SMS_TEMPLATES"] = {"reminder": {"en": "SMS_EN_ONLY"}}
        run_sweep(app, NOW)
    assert server.requests == []
    session.expire_all()
    sms = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "sms")).one()
    assert sms.status == "failed" and "no SMS template configured for 'reminder' in 'zh_Hans'" in sms.last_error
    assert len(inbox.envelopes) == 1  # the patient still hears from us
