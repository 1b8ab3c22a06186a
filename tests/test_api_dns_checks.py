"""GET /api/v1/blacklist and GET /api/v1/domains (the latest DNS checks, scoped to the
key's client's accounts; an admin key sees all), and the create response's warnings for
an account on a domain whose SPF or DKIM fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.extensions import db
from app.models import Account, BlacklistCheck, SenderAuthCheck

API = "/api/v1"
T0 = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)
RELAY = "192.0.2.50"


def _blacklist(target: str, kind: str, status: str, at: datetime, **kw: Any) -> None:
    db.session.add(
        BlacklistCheck(
            target=target, target_kind=kind, listed=status == "listed", status=status,
            checked_at=at, **kw,
        )
    )  # fmt: skip


def _auth(domain: str, at: datetime, **verdicts: str) -> None:
    values = {"spf": "pass", "dkim": "pass", "dmarc": "pass", "mx": "pass", **verdicts}
    results = {
        item: {"status": v, "found": None, "problem": f"{item} problem" if v == "fail" else None,
               "fix": f"{item} fix" if v == "fail" else None, "details": {}}
        for item, v in values.items()
    }  # fmt: skip
    db.session.add(SenderAuthCheck(domain=domain, ptr=None, results=results, checked_at=at,
                                   **values))  # fmt: skip


@pytest.fixture
def relays(app, monkeypatch):
    settings = app.extensions["settings"].model_copy(update={"sending_ips": [RELAY]})
    monkeypatch.setitem(app.extensions, "settings", settings)


@pytest.fixture
def world(factory, relays) -> dict[str, Any]:
    other = factory.create_client(name="Other")
    mine = factory.create_account(provider="postfix", email="a@mine.example")
    theirs = factory.create_account(email="b@theirs.example", client_id=other.id)
    factory.create_account(provider="gmail", email="me@gmail.com")
    _blacklist(RELAY, "ip", "clean", T0)
    _blacklist(RELAY, "ip", "listed", T0 + timedelta(days=1), lists_hit=["zen.spamhaus.org"],
               list_results={"zen.spamhaus.org": {"status": "listed", "answers": ["127.0.0.2"],
                                                  "note": None}})  # fmt: skip
    _blacklist("mine.example", "domain", "unknown", T0, note="dbl did not answer")
    _blacklist("theirs.example", "domain", "clean", T0)
    _blacklist("198.51.100.9", "ip", "clean", T0)  # a relay no account uses any more
    _auth("mine.example", T0, dkim="fail")
    _auth("mine.example", T0 + timedelta(days=1), spf="fail")
    _auth("theirs.example", T0)
    db.session.commit()
    return {"mine": mine, "theirs": theirs, "other": other}


def test_a_key_sees_the_latest_check_of_its_own_targets(api, world):
    body = api.get(f"{API}/blacklist").get_json()
    by_target = {item["target"]: item for item in body["items"]}
    assert sorted(by_target) == [RELAY, "mine.example"]
    relay = by_target[RELAY]
    assert relay["status"] == "listed" and relay["lists_hit"] == ["zen.spamhaus.org"]
    assert relay["lists"]["zen.spamhaus.org"]["answers"] == ["127.0.0.2"]
    assert relay["checked_at"].startswith("2026-12-02T05:00")
    assert relay["accounts"] == [world["mine"].id] and relay["kind"] == "ip"
    assert by_target["mine.example"]["note"] == "dbl did not answer"


def test_an_admin_key_sees_every_target(admin_api, world):
    body = admin_api.get(f"{API}/blacklist").get_json()
    targets = sorted(item["target"] for item in body["items"])
    assert targets == sorted([RELAY, "mine.example", "theirs.example", "198.51.100.9"])


def test_the_blacklist_filters_by_status_and_kind(api, admin_api, world):
    listed = api.get(f"{API}/blacklist?status=listed").get_json()["items"]
    assert [i["target"] for i in listed] == [RELAY]
    domains = admin_api.get(f"{API}/blacklist?kind=domain&status=clean").get_json()["items"]
    assert [i["target"] for i in domains] == ["theirs.example"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bad", "status"), ("kind=host", "kind"), ("status=", "status")],
)
def test_bad_blacklist_queries_answer_422_naming_the_field(api, world, query, field):
    response = api.get(f"{API}/blacklist?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_domains_show_each_item_with_its_fix_for_the_keys_client(api, world, factory):
    factory.create_account(email="c@unchecked.example")
    body = api.get(f"{API}/domains").get_json()
    by_domain = {item["domain"]: item for item in body["items"]}
    assert sorted(by_domain) == ["mine.example", "unchecked.example"]  # no freemail, no other's
    mine = by_domain["mine.example"]
    assert mine["checked_at"].startswith("2026-12-02T05:00")  # the latest check
    assert mine["spf"] == {"status": "fail", "found": None, "problem": "spf problem",
                           "fix": "spf fix", "details": {}}  # fmt: skip
    assert mine["dkim"]["status"] == "pass" and mine["ptr"] is None
    assert mine["providers"] == ["postfix"] and mine["accounts"] == [world["mine"].id]
    unchecked = by_domain["unchecked.example"]
    assert unchecked["checked_at"] is None and unchecked["spf"] is None


def test_domains_filter_and_scope(api, admin_api, world):
    assert api.get(f"{API}/domains?domain=theirs.example").get_json()["items"] == []
    items = admin_api.get(f"{API}/domains?domain=THEIRS.example").get_json()["items"]
    assert [i["domain"] for i in items] == ["theirs.example"]
    assert sorted(i["domain"] for i in admin_api.get(f"{API}/domains").get_json()["items"]) == [
        "mine.example",
        "theirs.example",
    ]


@pytest.mark.parametrize("query", ["domain=", "domain=a%20b.example", "domain=" + "a" * 256])
def test_bad_domain_queries_answer_422_naming_the_field(api, world, query):
    response = api.get(f"{API}/domains?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "domain"


def _new_account(api, email: str, provider: str = "gmail", **extra: Any) -> Any:
    body = {"name": email, "provider": provider, "email": email, "password": "pw", **extra}
    if provider in ("postfix", "smtp"):
        body["host"] = "relay.example"
    return api.post(f"{API}/accounts", json=body)


def test_an_account_on_a_failing_domain_is_flagged_when_created(api, world):
    response = _new_account(api, "new@mine.example")  # latest check: SPF fails
    assert response.status_code == 201
    warnings = response.get_json()["warnings"]
    assert warnings == [
        {"code": "spf_failing", "message": "mine.example: SPF fails: spf problem",
         "fix": "spf fix"}
    ]  # fmt: skip


def test_an_account_on_a_passing_domain_has_no_warnings_but_an_unchecked_one_does(api, world):
    assert _new_account(api, "new@theirs.example").get_json()["warnings"] == []
    assert _new_account(api, "me2@gmail.com").get_json()["warnings"] == []
    unchecked = _new_account(api, "new@fresh.example").get_json()["warnings"]
    assert [w["code"] for w in unchecked] == ["auth_unchecked"]


def test_a_new_provider_missing_from_a_passing_spf_is_flagged(api, world):
    spf = "v=spf1 include:_spf.google.com ~all"
    check = db.session.query(SenderAuthCheck).filter_by(domain="theirs.example").one()
    check.results = {**check.results, "spf": {**check.results["spf"], "found": spf}}
    db.session.commit()
    warnings = _new_account(api, "sg@theirs.example", provider="sendgrid").get_json()["warnings"]
    assert warnings == [
        {
            "code": "spf_missing_provider",
            "message": "theirs.example: the SPF record does not name include:sendgrid.net",
            "fix": "replace the TXT record of theirs.example with "
            '"v=spf1 include:_spf.google.com include:sendgrid.net ~all"',
        }
    ]


def test_an_account_declares_its_sending_ip_and_dkim_selector(api, world):
    response = _new_account(
        api, "ip@mine.example", provider="postfix", sending_ip="2001:DB8::1", dkim_selector="mail"
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["sending_ip"] == "2001:db8::1" and body["dkim_selector"] == "mail"
    account = db.session.get(Account, body["id"])
    assert account.dkim_selector == "mail"
    patched = api.patch(f"{API}/accounts/{body['id']}", json={"sending_ip": None}).get_json()
    assert patched["sending_ip"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("sending_ip", "300.1.1.1"), ("sending_ip", "relay.example"), ("dkim_selector", "a b")],
)
def test_a_bad_sending_ip_or_selector_is_refused_naming_the_field(api, world, field, value):
    before = db.session.query(Account).count()
    response = _new_account(api, "bad@mine.example", provider="postfix", **{field: value})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert db.session.query(Account).count() == before
