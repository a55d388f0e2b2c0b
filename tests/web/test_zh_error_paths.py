"""Every error path of the nurse and statistician pages, in Simplified Chinese: no English left.

Each request below is refused (bad date, missing reason, wrong code, locked data...). The page that
comes back (or the page a refusal redirects to, with its message) is read as a person would read
it: its visible text, minus what is data rather than UI (study ids, codes, instrument names, what
the user typed). Any run of two English words left is untranslated text.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from sqlalchemy import select

from qol_app.models import Timepoint
from qol_app.services import locks, timepoints, treatment_events
from qol_app.services.audit import Actor
from tests.factories import add_alert, add_response, add_timepoint, isolated_client, login, no_csrf

ACTOR = Actor.system("tests")
#: Data shown on staff pages that is not UI text (names of instruments, formats, zones, people).
DATA = [
    r"EORTC QLQ-C30[^<]*",
    r"EORTC QLQ-BN20[^<]*",
    r"EORTC QLQ-BR23[^<]*",
    r"EQ-5D-5L[^<]*",
    r"CONQUER[^<]*?(?=[\u4e00-\u9fff]|$)",
    r"CSV \(UTF-8\)",
    r"Excel \(\.xlsx\)",
    r"SAS transport \(\.xpt\)",
    r"Stata \(\.dta\)",
    r"SPSS \(\.sav\)",
    r"FHIR R4 bundle \(JSON\)",
    r"CDISC SDTM QS \(\.xpt \+ \.csv\)",
    r"Google Authenticator|Microsoft Authenticator|FreeOTP",
    r"Asia/\w+",
    r"system:\w+",
    r"Test \w+",  # the factory's staff names
    r"Test site \d+",
    r"Symptom diary[^<]*",
    r"manifest\.json",
]
ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,.'-]+[A-Za-z]{2,})+\b")


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r"<title>.*?</title>", " ", page, flags=re.S)
    page = re.sub(r"<svg\b.*?</svg>", " ", page, flags=re.S)
    page = re.sub(r"<code\b.*?</code>", " ", page, flags=re.S)  # stored codes and values, shown as data
    page = re.sub(r'<[^>]*\b(?:aria-label|title|placeholder|alt)="([^"]*)"[^>]*>', r" \1 ", page)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    for pattern in DATA:
        text = re.sub(pattern, " ", text)
    return text


def english_in(page: str) -> list[str]:
    return [m.group(0) for m in ENGLISH_RUN.finditer(visible_text(page))]


@pytest.fixture
def zh(app, session, factory, now):
    no_csrf(app)
    site = factory.site(code="ZH1", name="上海中心")
    patient = factory.patient(site, arm="B", randomization_date=dt.date(2026, 2, 1)).patient
    timepoints.reconcile_patient(session, ACTOR, patient, now)
    event, _ = treatment_events.record_event(
        session, ACTOR, patient, kind="end_of_treatment", date=dt.date(2026, 2, 10), now=now
    )
    treatment_events.record_event(session, ACTOR, patient, kind="systemic_cycle", date=dt.date(2026, 2, 2), now=now)
    rows = {tp.key: tp for tp in session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id))}
    submitted = add_response(session, rows["sys-c1"], at=now)
    missed = add_timepoint(session, patient, "m-1", status="missed", target=now.date() - dt.timedelta(days=20))
    reasoned = add_timepoint(
        session, patient, "m-2", status="missed", target=now.date() - dt.timedelta(days=25), missed_reason="forgot"
    )
    open_tp = add_timepoint(session, patient, "o-1", status="open", target=now.date())
    alert = add_alert(session, patient, at=now - dt.timedelta(hours=1))
    users = {
        role: factory.staff(role, sites=[site], language="zh_Hans")
        for role in ("nurse", "investigator", "admin", "statistician", "data_manager")
    }
    return dict(site=site, patient=patient, event=event, submitted=submitted, missed=missed, reasoned=reasoned,
                open_tp=open_tp, alert=alert, users=users)  # fmt: skip


def _check(client, method, url, data, failures, note=""):
    response = client.open(url, method=method, data=data)
    assert response.status_code != 500, (url, response.get_data(as_text=True)[:2000])
    page = response.get_data(as_text=True)
    if response.status_code in (301, 302, 303):
        page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'lang="zh-Hans"' in page, url
    left = english_in(page)
    if left:
        failures.append(f"{method} {url} {note}: {left[:8]}")
    return response


def test_nurse_and_investigator_error_paths_are_all_chinese(app, session, zh, now):
    p, failures = zh["patient"], []
    pid = p.id
    nurse = isolated_client(app)
    login(nurse, zh["users"]["nurse"])
    paths = [
        ("POST", "/staff/patients/new", {"study_id": p.study_id, "site_id": zh["site"].id, "arm": "A",
                                          "randomization_date": "2026-03-01", "language": "zh_Hans"}),
        ("POST", "/staff/patients/new", {"study_id": "坏 编号", "site_id": zh["site"].id}),
        ("POST", f"/staff/patients/{pid}/link", {"reason": ""}),
        ("POST", f"/staff/patients/{pid}/pin", {"action": "set", "pin": "", "reason": "忘记"}),
        ("POST", f"/staff/patients/{pid}/pin", {"action": "set", "pin": "12", "reason": ""}),
        ("POST", f"/staff/patients/{pid}/status", {"status": "died", "date": "2027-01-01", "reason": "家属来电"}),
        ("POST", f"/staff/patients/{pid}/status", {"status": "died", "date": "2026-01-01", "reason": "家属来电"}),
        ("POST", f"/staff/patients/{pid}/status", {"status": "died", "reason": "家属来电"}),
        ("POST", f"/staff/patients/{pid}/events", {"kind": "intrathecal_dose", "date": "2027-06-01"}),
        ("POST", f"/staff/patients/{pid}/events", {"kind": "progression", "date": "2026-01-05"}),
        ("POST", f"/staff/patients/{pid}/events", {"kind": "end_of_treatment", "date": "2026-03-01"}),
        ("POST", f"/staff/patients/{pid}/events", {"kind": "progression", "date": "2026-03-01", "cycle_length_days": "21"}),
        ("POST", f"/staff/patients/{pid}/events", {"kind": "progression", "date": "不是日期"}),
        ("POST", f"/staff/patients/{pid}/events/{zh['event'].id}/move", {"date": "2026-02-11", "reason": ""}),
        ("POST", f"/staff/patients/{pid}/events/{zh['event'].id}/move", {"date": "2027-02-11", "reason": "延迟"}),
        ("POST", f"/staff/patients/{pid}/events/{zh['event'].id}/delete", {"reason": ""}),
        ("POST", f"/staff/patients/{pid}/timepoints/{zh['missed'].id}/reason", {"missed_reason": "other", "text": ""}),
        ("POST", f"/staff/patients/{pid}/timepoints/{zh['reasoned'].id}/reason", {"missed_reason": "too_ill"}),
        ("POST", f"/staff/patients/{pid}/timepoints/{zh['open_tp'].id}/reason", {"missed_reason": "too_ill"}),
        ("POST", f"/staff/patients/{pid}/timepoints/{zh['open_tp'].id}/enter/eortc_qlq_c30",
         {"entry_mode": "interview", "entry_respondent": "proxy"}),
        ("POST", f"/staff/patients/{pid}/responses/{zh['submitted'].id}/correct", {"correction_reason": ""}),
        ("POST", f"/staff/patients/{pid}/responses/{zh['submitted'].id}/correct", {"correction_reason": "抄录错误"}),
        ("POST", f"/staff/patients/{pid}/alerts/{zh['alert'].id}/acknowledge", {"action": ""}),
        ("POST", f"/staff/patients/{pid}/details", {"email": "不是邮箱", "language": "zh_Hans", "reason": "更新"}),
        ("POST", f"/staff/patients/{pid}/details", {"timezone": "Beijing", "language": "zh_Hans", "reason": "更新"}),
        ("POST", f"/staff/patients/{pid}/details", {"language": "zh_Hans", "reason": ""}),
        ("POST", "/staff/account", {"current": "错误的密码", "new": "一个足够长的新密码啊啊"}),
        ("POST", "/staff/account", {"current": "correct horse battery", "new": "短"}),
        ("POST", "/staff/account", {"current": "correct horse battery", "new": "qwerty123456"}),
        ("POST", "/staff/account/totp", {"code": "000000"}),
        ("POST", "/staff/account/totp/off", {"password": "错误"}),
        ("POST", "/staff/account/recovery-codes", {"password": "correct horse battery"}),
    ]  # fmt: skip
    for method, url, data in paths:
        _check(nurse, method, url, data, failures)
    for method, url in [("GET", f"/staff/patients/{pid}"), ("GET", "/staff/"), ("GET", "/staff/patients")]:
        _check(nurse, method, url, None, failures, "(page)")

    investigator = isolated_client(app)
    login(investigator, zh["users"]["investigator"])
    for data in [
        {"arm": "A", "randomization_date": "2027-01-01", "reason": "录入错误"},
        {"arm": "A", "randomization_date": "2026-02-20", "reason": "录入错误"},
        {"arm": "A", "randomization_date": "2026-01-01", "reason": ""},
    ]:
        _check(investigator, "POST", f"/staff/patients/{pid}/randomization", data, failures)
    _check(investigator, "GET", f"/staff/patients/{pid}/history", None, failures, "(history)")

    # Locked: the refusal page.
    lock = locks.lock(session, ACTOR, "patient", patient=p, reason="数据库锁定", now=now)
    _check(nurse, "POST", f"/staff/patients/{pid}/events", {"kind": "progression", "date": "2026-03-01"}, failures)
    locks.release(session, ACTOR, lock, reason="解除", now=now)
    assert not failures, "\n".join(failures)


def test_admin_and_data_manager_error_paths_are_all_chinese(app, session, zh, now):
    failures: list[str] = []
    admin = isolated_client(app)
    login(admin, zh["users"]["admin"])
    target = zh["users"]["nurse"]
    paths = [
        ("POST", "/staff/admin/users/new", {"username": target.username, "full_name": "王", "role": "nurse",
                                             "language": "zh_Hans", "site_id": 0, "password": "一个足够长的密码啊啊啊"}),
        ("POST", "/staff/admin/users/new", {"username": "new.one", "full_name": "王", "role": "nurse",
                                             "language": "zh_Hans", "site_id": 0, "password": "123qweasdzxc"}),
        ("POST", f"/staff/admin/users/{target.id}/password", {"password": "短", "reason": "重置"}),
        ("POST", f"/staff/admin/users/{target.id}/password", {"password": "qazwsxedcrfv", "reason": "重置"}),
        ("POST", f"/staff/admin/users/{target.id}/role", {"role": "investigator", "reason": ""}),
        ("POST", f"/staff/admin/users/{target.id}/active", {"enable": "0", "reason": ""}),
        ("POST", f"/staff/admin/users/{target.id}/sites", {"op": "remove", "site_id": zh["site"].id, "reason": ""}),
        ("POST", f"/staff/admin/users/{target.id}/totp", {"reason": ""}),
        ("POST", "/staff/admin/sites", {"code": "ZH1", "name": "重复", "timezone": "Asia/Shanghai",
                                         "default_language": "zh_Hans", "emergency_phone": "120"}),
        ("POST", "/staff/admin/sites", {"code": "ZH9", "name": "新中心", "timezone": "北京时间",
                                         "default_language": "zh_Hans", "emergency_phone": "急救"}),
        ("POST", f"/staff/admin/sites/{zh['site'].id}", {"code": "ZH1", "name": "上海中心", "timezone": "Asia/Shanghai",
                                                        "default_language": "zh_Hans", "emergency_phone": "120", "reason": ""}),
        ("POST", "/staff/admin/locks", {"scope": "patient", "study_id": "无此人", "reason": "锁定"}),
        ("POST", "/staff/admin/locks", {"scope": "site", "site_id": 0, "reason": "锁定"}),
        ("POST", "/staff/admin/locks", {"scope": "trial", "at": "2020-01-01T00:00", "reason": "锁定"}),
        ("POST", "/staff/admin/locks", {"scope": "trial", "at": "明天", "reason": ""}),
        ("GET", "/staff/admin/audit?actor=nobody.here", None),
        ("GET", "/staff/admin/audit?date_from=2026-03-10&date_to=2026-03-01", None),
    ]  # fmt: skip
    for method, url, data in paths:
        _check(admin, method, url, data, failures)
    lock = locks.lock(session, ACTOR, "trial", reason="期中分析", at=now + dt.timedelta(days=1), now=now)
    _check(admin, "POST", f"/staff/admin/locks/{lock.id}/release", {"reason": ""}, failures)
    _check(admin, "POST", "/staff/admin/locks", {"scope": "trial", "reason": "再次"}, failures)
    for url in ("/staff/admin/users", f"/staff/admin/users/{target.id}", "/staff/admin/sites", "/staff/admin/locks"):
        _check(admin, "GET", url, None, failures, "(page)")

    manager = isolated_client(app)
    login(manager, zh["users"]["data_manager"])
    pid = zh["patient"].id
    _check(
        manager,
        "POST",
        f"/staff/patients/{pid}/timepoints/{zh['missed'].id}/reason",
        {"missed_reason": "other"},
        failures,
    )
    _check(manager, "GET", f"/staff/patients/{pid}", None, failures, "(page)")
    assert not failures, "\n".join(failures)


def test_sign_in_error_paths_are_all_chinese(app, session, zh):
    failures: list[str] = []
    client = isolated_client(app)
    client.post("/staff/language", data={"language": "zh_Hans"})
    nurse = zh["users"]["nurse"]
    for _ in range(5):
        _check(client, "POST", "/staff/login", {"username": nurse.username, "password": "错误"}, failures)
    _check(client, "POST", "/staff/login", {"username": "", "password": ""}, failures)
    admin = zh["users"]["admin"]
    other = isolated_client(app)
    other.post("/staff/language", data={"language": "zh_Hans"})
    other.post("/staff/login", data={"username": admin.username, "password": "correct horse battery"})
    _check(other, "POST", "/staff/login/code", {"code": "000000"}, failures)
    _check(other, "GET", "/staff/login/setup", None, failures, "(no setup pending)")
    assert not failures, "\n".join(failures)


def test_statistician_error_paths_are_all_chinese(app, session, zh):
    failures: list[str] = []
    client = isolated_client(app)
    login(client, zh["users"]["statistician"])
    base = {"labels": "zh_Hans", "threshold": "10"}
    for data in [
        base,  # no format
        base | {"formats": "csv", "as_of": "昨天"},
        base | {"formats": "csv", "as_of": "2027-01-01T00:00:00Z"},
        base | {"formats": "csv", "date_from": "2026-03-01", "date_to": "2026-02-01"},
        base | {"formats": "csv", "threshold": "1000"},
        base | {"formats": "csv", "date_from": "不是日期"},
    ]:
        _check(client, "POST", "/stats/export", data, failures)
    _check(client, "GET", "/stats/", None, failures, "(page)")
    assert not failures, "\n".join(failures)


def test_the_checker_finds_english(app):
    assert english_in("<p>这是中文。</p><p>the event date is in the future</p>") == ["the event date is in the future"]
    assert english_in("<p>患者 ZH1-001 · EORTC QLQ-C30 · Asia/Shanghai</p>") == []
