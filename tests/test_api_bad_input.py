"""Every bad input gets a 4xx JSON error naming the field, never a 500, and leaves every
stored row as it was."""

# ruff: noqa: E501 -- the table reads best one case per line

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text

from app.extensions import db

TABLES = ("accounts", "campaigns", "recipients", "suppressions", "events", "limits")
CAMPAIGN = {"name": "c", "subject": "Hi {{ first_name }}", "body_text": "Hello"}
ONE = [{"email": "a@b.example", "first_name": "A"}]


@dataclass
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str
    field: str | None
    json: Any = None
    data: Any = None
    content_type: str | None = None
    form: dict[str, Any] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] | None = None


def post_json(id, path, body, status, code, field, **kw):
    return Case(id, "POST", path, status, code, field, json=body, **kw)


def invalid(id, path, body, field, method="POST"):
    return Case(id, method, path, 422, "invalid", field, json=body)


def upload(id, path, form, status, code, field, csv=b"email,first_name\na@b.example,A\n", **kw):
    files = {} if csv is None else {"file": (io.BytesIO(csv), "list.csv")}
    return Case(id, "POST", path, status, code, field, form={**form, **files}, **kw)


A = "/api/v1/accounts"
ACC = "/api/v1/accounts/{account}"
C = "/api/v1/campaigns"
CMP = "/api/v1/campaigns/{campaign}"
S = "/api/v1/suppressions"
GMAIL = {"name": "new", "provider": "gmail", "email": "n@x.example", "password": "pw"}

CASES = [
    # --- bodies that are not JSON objects
    Case("malformed-json", "POST", A, 400, "invalid_json", None, data='{"name": ', content_type="application/json"),
    Case("deeply-nested-json", "POST", A, 400, "invalid_json", None, data="[" * 100_000 + "]" * 100_000, content_type="application/json"),
    Case("non-utf8-json", "POST", A, 400, "invalid_json", None, data=b'{"name": "\xff"}', content_type="application/json"),
    Case("form-encoded-body", "POST", A, 415, "unsupported_media_type", None, data="name=x", content_type="application/x-www-form-urlencoded"),
    Case("text-body", "POST", C, 415, "unsupported_media_type", None, data="hello", content_type="text/plain"),
    Case("text-body-pause", "POST", ACC + "/pause", 415, "unsupported_media_type", None, data="x", content_type="text/plain"),
    Case("json-array-body", "POST", A, 422, "invalid", None, json=[GMAIL]),
    Case("json-array-campaign", "POST", C, 422, "invalid", None, json=[CAMPAIGN]),
    Case("too-large-body", "POST", A, 413, "too_large", None, json={**GMAIL, "name": "x" * 5000}, config={"MAX_CONTENT_LENGTH": 1000}),
    Case("no-api-key", "POST", A, 401, "unauthorized", None, json=GMAIL, headers={"Authorization": ""}),
    Case("wrong-method", "PUT", A, 405, "method_not_allowed", None, json=GMAIL),
    Case("unknown-path", "GET", CMP + "/nothing", 404, "not_found", None),
    # --- accounts
    invalid("account-missing-name", A, {k: v for k, v in GMAIL.items() if k != "name"}, "name"),
    invalid("account-unknown-field", A, {**GMAIL, "nickname": "n"}, "nickname"),
    invalid("account-name-not-a-string", A, {**GMAIL, "name": 5}, "name"),
    invalid("account-name-empty", A, {**GMAIL, "name": "  "}, "name"),
    invalid("account-name-too-long", A, {**GMAIL, "name": "n" * 201}, "name"),
    invalid("account-name-with-nul", A, {**GMAIL, "name": "a\x00b"}, "name"),
    invalid("account-name-lone-surrogate", A, {**GMAIL, "name": "a\ud800"}, "name"),
    invalid("account-port-as-string", A, {**GMAIL, "port": "587"}, "port"),
    invalid("account-port-as-bool", A, {**GMAIL, "port": True}, "port"),
    invalid("account-port-out-of-range", A, {**GMAIL, "port": 70000}, "port"),
    invalid("account-port-fraction", A, {**GMAIL, "port": 587.5}, "port"),
    invalid("account-security-unknown", A, {**GMAIL, "security": "ssl"}, "security"),
    invalid("account-warmup-not-bool", A, {**GMAIL, "warmup": "yes"}, "warmup"),
    invalid("account-warmup-number", A, {**GMAIL, "warmup": 1}, "warmup"),
    invalid("account-bad-email", A, {**GMAIL, "email": "nope"}, "email"),
    invalid("account-from-name-crlf", A, {**GMAIL, "from_name": "Ana\r\nBcc: all@x.example"}, "from_name"),
    invalid("account-password-crlf", A, {**GMAIL, "password": "pw\r\nQUIT"}, "password"),
    invalid("account-tags-not-a-list", A, {**GMAIL, "tags": "eu"}, "tags"),
    invalid("account-tag-not-a-string", A, {**GMAIL, "tags": ["eu", 1]}, "tags.1"),
    invalid("account-daily-limit-zero", A, {**GMAIL, "daily_limit": 0}, "daily_limit"),
    invalid("account-daily-limit-huge", A, {**GMAIL, "daily_limit": 2**40}, "daily_limit"),
    invalid("account-unknown-provider", A, {**GMAIL, "provider": "mailchimp"}, "provider"),
    invalid("account-provider-not-a-string", A, {**GMAIL, "provider": ["gmail"]}, "provider"),
    invalid("account-smtp-without-host", A, {**GMAIL, "provider": "smtp"}, "host"),
    invalid("account-gmail-without-password", A, {k: v for k, v in GMAIL.items() if k != "password"}, "password"),
    Case("account-duplicate-name", "POST", A, 409, "conflict", "name", json={**GMAIL, "name": "seeded"}),
    invalid("patch-provider", ACC, {"provider": "sendgrid"}, "provider", method="PATCH"),
    invalid("patch-name-null", ACC, {"name": None}, "name", method="PATCH"),
    invalid("patch-host-empty", ACC, {"host": ""}, "host", method="PATCH"),
    invalid("patch-unknown-field", ACC, {"status": "active"}, "status", method="PATCH"),
    Case("patch-non-integer-id", "PATCH", A + "/abc", 404, "not_found", None, json={"name": "x"}),
    Case("patch-id-beyond-int4", "PATCH", A + "/99999999999", 404, "not_found", None, json={"name": "x"}),
    Case("pause-id-beyond-bigint", "POST", A + "/99999999999999999999999/pause", 404, "not_found", None),
    Case("delete-id-zero", "DELETE", A + "/0", 404, "not_found", None),
    Case("campaign-id-beyond-int4", "POST", C + "/99999999999/recipients", 404, "not_found", None, json={"recipients": ONE}),
    Case("patch-unknown-id", "PATCH", A + "/999", 404, "not_found", None, json={"name": "x"}),
    Case("get-negative-id", "GET", A + "/-1", 404, "not_found", None),
    invalid("pause-until-not-a-date", ACC + "/pause", {"until": "tomorrow"}, "until"),
    invalid("pause-until-in-the-past", ACC + "/pause", {"until": "2001-01-01T00:00:00Z"}, "until"),
    invalid("pause-reason-not-a-string", ACC + "/pause", {"reason": 5}, "reason"),
    invalid("pause-unknown-field", ACC + "/pause", {"for": "1h"}, "for"),
    Case("resume-active-account", "POST", ACC + "/resume", 409, "invalid_transition", None),
    Case("delete-unknown-account", "DELETE", A + "/999", 404, "not_found", None),
    Case("delete-busy-account", "DELETE", A + "/{busy_account}", 409, "account_busy", None),
    # --- campaigns (JSON)
    invalid("campaign-missing-subject", C, {"name": "c", "body_text": "b"}, "subject"),
    invalid("campaign-subject-crlf", C, {**CAMPAIGN, "subject": "Hi\r\nBcc: all@x.example"}, "subject"),
    invalid("campaign-subject-lf", C, {**CAMPAIGN, "subject": "Hi\nthere"}, "subject"),
    invalid("campaign-from-name-lf", C, {**CAMPAIGN, "from_name": "Ana\nX-Evil: 1"}, "from_name"),
    invalid("campaign-body-not-a-string", C, {**CAMPAIGN, "body_text": 5}, "body_text"),
    invalid("campaign-unknown-field", C, {**CAMPAIGN, "schedule": "now"}, "schedule"),
    invalid("recipient-without-email", C, {**CAMPAIGN, "recipients": [*ONE * 3, {"first_name": "x"}]}, "recipients.3.email"),
    invalid("recipient-email-not-a-string", C, {**CAMPAIGN, "recipients": [{"email": 5}]}, "recipients.0.email"),
    invalid("recipient-nested-value", C, {**CAMPAIGN, "recipients": [*ONE, {"email": "c@d.example", "city": {"n": 1}}]}, "recipients.1.city"),
    invalid("recipient-list-value", C, {**CAMPAIGN, "recipients": [{"email": "c@d.example", "tags": [1]}]}, "recipients.0.tags"),
    invalid("recipient-nul-value", C, {**CAMPAIGN, "recipients": [{"email": "c@d.example", "note": "a\x00"}]}, "recipients.0.note"),
    invalid("recipient-not-an-object", C, {**CAMPAIGN, "recipients": ["a@b.example"]}, "recipients.0"),
    invalid("recipients-not-a-list", C, {**CAMPAIGN, "recipients": "a@b.example"}, "recipients"),
    Case("recipient-nan-value", "POST", C, 422, "invalid", "recipients.0.score", data=json.dumps(CAMPAIGN)[:-1] + ', "recipients": [{"email": "a@b.example", "score": NaN}]}', content_type="application/json"),
    invalid("campaign-account-id-as-string", C, {**CAMPAIGN, "account_ids": ["1"]}, "account_ids.0"),
    invalid("campaign-account-ids-unknown", C, {**CAMPAIGN, "account_ids": [999]}, "account_ids"),
    invalid("campaign-tags-and-ids", C, {**CAMPAIGN, "account_tags": ["eu"], "account_ids": [1]}, "account_ids"),
    invalid("campaign-window-a-string", C, {**CAMPAIGN, "window": "9-17"}, "window"),
    invalid("campaign-window-bad-zone", C, {**CAMPAIGN, "window": {"timezone": "Nowhere/Town", "days": [0], "start_hour": 9, "end_hour": 17}}, "window.timezone"),
    invalid("campaign-window-unknown-key", C, {**CAMPAIGN, "window": {"timezone": "UTC", "days": [0], "start_hour": 9, "end_hour": 17, "dst": True}}, "window.dst"),
    invalid("campaign-daily-cap-negative", C, {**CAMPAIGN, "daily_cap": -1}, "daily_cap"),
    Case("campaign-template-syntax", "POST", C, 422, "template", "body_text", json={**CAMPAIGN, "body_text": "{% if %}", "recipients": ONE}),
    Case("campaign-undefined-variable", "POST", C, 422, "template", "subject", json={**CAMPAIGN, "recipients": [{"email": "a@b.example"}]}),
    Case("campaign-too-many-recipients", "POST", C, 413, "too_large", "recipients", json={**CAMPAIGN, "recipients": ONE * 4}, settings={"import_max_rows": 3}),
    # --- campaigns (multipart)
    upload("upload-without-file", C, CAMPAIGN, 422, "invalid", "file", csv=None),
    upload("upload-with-recipients-field", C, {**CAMPAIGN, "recipients": "a@b.example"}, 422, "invalid", "recipients"),
    upload("upload-second-file", C, {**CAMPAIGN, "attachment": (io.BytesIO(b"x"), "x.pdf")}, 422, "invalid", "attachment"),
    upload("upload-window-not-json", C, {**CAMPAIGN, "window": "{"}, 422, "invalid", "window"),
    upload("upload-window-bad-hours", C, {**CAMPAIGN, "window": '{"timezone": "UTC", "days": [0], "start_hour": 9, "end_hour": 9}'}, 422, "invalid", "window.end_hour"),
    upload("upload-subject-crlf", C, {**CAMPAIGN, "subject": "a\r\nb"}, 422, "invalid", "subject"),
    upload("upload-account-id-not-a-number", C, {**CAMPAIGN, "account_ids": "1,x"}, 422, "invalid", "account_ids.1"),
    upload("upload-daily-cap-not-a-number", C, {**CAMPAIGN, "daily_cap": "lots"}, 422, "invalid", "daily_cap"),
    upload("upload-name-twice", C, {**CAMPAIGN, "name": ["a", "b"]}, 422, "invalid", "name"),
    upload("upload-binary-file", C, CAMPAIGN, 422, "invalid", "file", csv=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    upload("upload-no-email-column", C, CAMPAIGN, 422, "invalid", "file", csv=b"name,first_name\nA,A\n"),
    upload("upload-undefined-variable", C, {**CAMPAIGN, "subject": "{{ surname }}"}, 422, "template", "subject"),
    upload("upload-too-many-rows", C, CAMPAIGN, 413, "too_large", "file", csv=b"email,first_name\n" + b"".join(b"r%d@b.example,R\n" % i for i in range(5)), settings={"import_max_rows": 3}),
    # --- adding recipients
    invalid("add-without-recipients", CMP + "/recipients", {}, "recipients"),
    invalid("add-unknown-field", CMP + "/recipients", {"recipients": ONE, "mode": "merge"}, "mode"),
    invalid("add-recipient-without-email", CMP + "/recipients", {"recipients": [{"name": "x"}]}, "recipients.0.email"),
    upload("add-upload-with-form-field", CMP + "/recipients", {"name": "x"}, 422, "invalid", "name"),
    upload("add-upload-without-file", CMP + "/recipients", {}, 422, "invalid", "file", csv=None),
    post_json("add-to-unknown-campaign", "/api/v1/campaigns/999/recipients", {"recipients": ONE}, 404, "not_found", None),
    post_json("add-to-cancelled-campaign", "/api/v1/campaigns/{cancelled}/recipients", {"recipients": ONE}, 409, "campaign_closed", None),
    post_json("add-too-many", CMP + "/recipients", {"recipients": ONE * 4}, 413, "too_large", "recipients", settings={"import_max_rows": 3}),
    # --- campaign states
    Case("start-running", "POST", "/api/v1/campaigns/{running}/start", 409, "invalid_transition", None),
    Case("resume-draft", "POST", CMP + "/resume", 409, "invalid_transition", None),
    Case("cancel-cancelled", "POST", "/api/v1/campaigns/{cancelled}/cancel", 409, "invalid_transition", None),
    Case("start-empty", "POST", "/api/v1/campaigns/{empty}/start", 409, "no_recipients", None),
    Case("cancel-unknown", "POST", "/api/v1/campaigns/999/cancel", 404, "not_found", None),
    Case("start-non-integer-id", "POST", "/api/v1/campaigns/abc/start", 404, "not_found", None),
    # --- listing
    Case("recipients-unknown-status", "GET", CMP + "/recipients?status=lost", 422, "invalid", "status"),
    Case("recipients-bad-cursor", "GET", CMP + "/recipients?cursor=%25%25", 422, "invalid", "cursor"),
    Case("recipients-huge-cursor", "GET", CMP + "/recipients?cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk5", 422, "invalid", "cursor"),
    Case("recipients-limit-too-big", "GET", CMP + "/recipients?limit=100000", 422, "invalid", "limit"),
    Case("campaigns-bad-cursor", "GET", C + "?cursor=zzz", 422, "invalid", "cursor"),
    Case("suppressions-q-with-nul", "GET", S + "?q=a%00b", 422, "invalid", "q"),
    # --- suppressions
    invalid("suppress-nothing", S, {}, "email"),
    invalid("suppress-both", S, {"email": "a@b.example", "domain": "b.example"}, "domain"),
    invalid("suppress-bad-email", S, {"email": "a@@b"}, "email"),
    invalid("suppress-bad-domain", S, {"domain": "not a domain"}, "domain"),
    invalid("suppress-email-not-a-string", S, {"email": ["a@b.example"]}, "email"),
    invalid("suppress-unknown-reason", S, {"email": "a@b.example", "reason": "dislike"}, "reason"),
    Case("suppress-form-encoded", "POST", S, 415, "unsupported_media_type", None, data="email=a@b.example", content_type="application/x-www-form-urlencoded"),
    Case("unsuppress-absent", "DELETE", S + "/nobody@x.example", 404, "not_found", None),
    Case("unsuppress-nul", "DELETE", S + "/a%00b", 404, "not_found", None),
]  # fmt: skip


@pytest.fixture
def seeded(factory) -> dict[str, int]:
    account = factory.create_account(name="seeded")
    busy = factory.create_account()
    draft = factory.create_campaign(field_names=["first_name"])
    factory.create_recipients(draft, ["r1@x.example", "r2@x.example"], fields={"first_name": "R"})
    running = factory.create_campaign(status="running")
    factory.create_recipients(running, ["q@x.example"], status="queued", account_id=busy.id)
    cancelled = factory.create_campaign(status="cancelled")
    empty = factory.create_campaign()
    factory.suppress("blocked@x.example")
    return {
        "account": account.id,
        "busy_account": busy.id,
        "campaign": draft.id,
        "running": running.id,
        "cancelled": cancelled.id,
        "empty": empty.id,
    }


def _snapshot(app) -> dict[str, list[tuple]]:
    with app.app_context(), db.engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in TABLES
        }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_4xx_naming_the_field_and_changes_nothing(
    case, api, app, seeded, monkeypatch
):
    for key, value in case.config.items():
        monkeypatch.setitem(app.config, key, value)
    if case.settings:
        patched = app.extensions["settings"].model_copy(update=case.settings)
        monkeypatch.setitem(app.extensions, "settings", patched)
    before = _snapshot(app)
    kwargs: dict[str, Any] = {}
    if case.json is not None:
        kwargs["json"] = case.json
    if case.data is not None:
        kwargs["data"] = case.data
        kwargs["content_type"] = case.content_type
    if case.form is not None:
        kwargs["data"] = case.form
        kwargs["content_type"] = "multipart/form-data"
    if case.headers is not None:
        kwargs["headers"] = case.headers
    path = case.path.format(**seeded)
    response = (
        getattr(api, case.method.lower())(path, **kwargs)
        if case.method != "PUT"
        else api.put(path, **kwargs)
    )

    assert response.status_code == case.status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == case.code, error
    assert error.get("field") == case.field, error
    assert error["message"]
    assert _snapshot(app) == before
