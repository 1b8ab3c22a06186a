"""The sending-domain scope protects the operator's own domains: accounts on one own domain
share its window, while each freemail account (two strangers' Gmail addresses) has its own,
keyed by its address."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import LimitOverride, Recipient
from app.services.limits import load_limits, sending_domain_key
from rotator.limiter import Scope
from tests.pipeline import dispatch


@pytest.fixture
def low_domain_limit(app, monkeypatch):
    settings = app.extensions["settings"].model_copy(update={"limit_sending_domain_per_day": 3})
    monkeypatch.setitem(app.extensions, "settings", settings)
    return settings


def _account(factory, email):
    return factory.create_account(email=email, per_minute_limit=10_000)


def _queued_by_account() -> Counter[int]:
    db.session.expire_all()
    rows = db.session.execute(select(Recipient.account_id).where(Recipient.status == "queued"))
    return Counter(rows.scalars())


def _campaign(factory, n):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, [f"user{i}@example.org" for i in range(n)])
    return campaign


def test_two_gmail_accounts_each_have_their_own_sending_domain_window(
    app, factory, low_domain_limit
):
    ann, bob = _account(factory, "Ann@gmail.com"), _account(factory, "bob@gmail.com")
    _campaign(factory, 10)
    assert dispatch(app).queued == 6
    assert _queued_by_account() == {ann.id: 3, bob.id: 3}


def test_two_accounts_on_an_own_domain_still_share_its_window(app, factory, low_domain_limit):
    one, two = _account(factory, "a@brand.example"), _account(factory, "b@brand.example")
    _campaign(factory, 10)
    assert dispatch(app).queued == 3
    assert set(_queued_by_account()) <= {one.id, two.id}


def test_the_key_is_the_address_for_freemail_and_the_domain_otherwise(app, factory, settings):
    gmail = _account(factory, "Ann.Smith@gmail.com")
    own = _account(factory, "ann@brand.example")
    assert sending_domain_key(gmail, settings) == "ann.smith@gmail.com"
    assert sending_domain_key(own, settings) == "brand.example"
    table = load_limits(db.session, settings)
    [window] = [
        w
        for w in table.windows(account=gmail, recipient_domain="x.org")
        if w.scope == Scope.SENDING_DOMAIN
    ]
    assert (window.key, window.limit) == ("ann.smith@gmail.com", 2000)


def test_an_override_of_the_bare_freemail_domain_sets_each_accounts_window(app, factory):
    ann, bob = _account(factory, "ann@gmail.com"), _account(factory, "bob@gmail.com")
    db.session.add(LimitOverride(client_id=1, scope="sending_domain", key="gmail.com", per_day=2))
    db.session.add(
        LimitOverride(client_id=1, scope="sending_domain", key="bob@gmail.com", per_day=1)
    )
    db.session.commit()
    _campaign(factory, 10)
    assert dispatch(app).queued == 3
    assert _queued_by_account() == {ann.id: 2, bob.id: 1}


def test_get_limits_lists_the_keys_the_limiter_uses(app, api, factory, low_domain_limit):
    ann, bob = _account(factory, "ann@gmail.com"), _account(factory, "bob@gmail.com")
    one, two = _account(factory, "a@brand.example"), _account(factory, "b@brand.example")
    _campaign(factory, 20)
    dispatch(app)
    entries = {
        e["key"]: e for e in api.get("/api/v1/limits").get_json()["scopes"]["sending_domain"]
    }
    assert set(entries) == {"ann@gmail.com", "bob@gmail.com", "brand.example"}
    assert entries["ann@gmail.com"]["accounts"] == [ann.id]
    assert entries["bob@gmail.com"]["accounts"] == [bob.id]
    assert entries["brand.example"]["accounts"] == [one.id, two.id]
    assert {k: e["used"]["day"] for k, e in entries.items()} == {
        "ann@gmail.com": 3,
        "bob@gmail.com": 3,
        "brand.example": 3,
    }
    assert all(e["per_day"] == 3 for e in entries.values())


def test_an_address_key_is_accepted_for_freemail_only(api, factory):
    ok = api.put("/api/v1/limits/sending_domain/Ann@Gmail.com", json={"per_day": 5})
    assert ok.status_code == 200 and ok.get_json()["key"] == "ann@gmail.com"
    listed = api.get("/api/v1/limits").get_json()["scopes"]["sending_domain"]
    assert [(e["key"], e["per_day"], e["accounts"]) for e in listed] == [("ann@gmail.com", 5, [])]
    assert api.delete("/api/v1/limits/sending_domain/ann@gmail.com").status_code == 204
    refused = api.put("/api/v1/limits/sending_domain/ann@brand.example", json={"per_day": 5})
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["field"] == "key" and "brand.example" in error["message"]
