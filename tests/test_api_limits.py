"""GET /limits, PUT/DELETE /limits/<scope>/<key>: effective limits, overrides, use now."""

from __future__ import annotations

from sqlalchemy import select

from app.models import LimitOverride
from tests.pipeline import dispatch


def _entry(body, scope, key):
    return next(e for e in body["scopes"][scope] if e["key"] == key)


def test_defaults_come_from_settings(api, factory, settings):
    account = factory.create_account(email="a@brand.example", daily_limit=300)
    body = api.get("/api/v1/limits").get_json()
    assert _entry(body, "system", "*")["per_minute"] == settings.limit_system_per_minute
    entry = _entry(body, "account", str(account.id))
    assert entry["per_minute"] == settings.limit_account_per_minute
    assert entry["per_day"] == 300
    assert entry["override"] is None
    domain = _entry(body, "sending_domain", "brand.example")
    assert domain["per_day"] == settings.limit_sending_domain_per_day
    assert body["defaults"]["freemail_per_day"] == settings.limit_freemail_per_day


def test_put_creates_or_replaces_an_override(api, session):
    response = api.put("/api/v1/limits/recipient_domain/Corp.Example", json={"per_day": 5})
    assert response.status_code == 200
    assert response.get_json() == {
        "scope": "recipient_domain",
        "client_id": 1,
        "key": "corp.example",
        "per_minute": None,
        "per_day": 5,
    }
    api.put("/api/v1/limits/recipient_domain/corp.example", json={"per_day": 7, "per_minute": 2})
    rows = session.execute(select(LimitOverride)).scalars().all()
    assert [(r.key, r.per_minute, r.per_day) for r in rows] == [("corp.example", 2, 7)]
    body = api.get("/api/v1/limits").get_json()
    entry = _entry(body, "recipient_domain", "corp.example")
    assert (entry["per_minute"], entry["per_day"]) == (2, 7)
    assert entry["override"] == {"per_minute": 2, "per_day": 7}


def test_overrides_are_what_the_dispatcher_enforces(app, api, admin_api, factory):
    factory.create_account(per_minute_limit=1000)
    # The system scope is the installation's: an admin key sets it.
    assert admin_api.put("/api/v1/limits/system/*", json={"per_minute": 3}).status_code == 200
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, [f"u{i}@gmail.com" for i in range(6)])
    assert dispatch(app).queued == 3
    used = _entry(api.get("/api/v1/limits").get_json(), "system", "*")["used"]
    assert used == {"minute": 3, "day": None}  # the system scope has no day window


def test_account_day_override_cannot_lift_the_warm_up_cap(api, factory, settings):
    account = factory.create_account(daily_limit=500, warmup_enabled=True, warmup_day=1)
    api.put(f"/api/v1/limits/account/{account.id}", json={"per_day": 400})
    entry = _entry(api.get("/api/v1/limits").get_json(), "account", str(account.id))
    assert entry["per_day"] == settings.warmup_start


def test_delete_removes_an_override(api, session):
    api.put("/api/v1/limits/sending_domain/brand.example", json={"per_day": 10})
    assert api.delete("/api/v1/limits/sending_domain/brand.example").status_code == 204
    assert session.execute(select(LimitOverride)).first() is None
    response = api.delete("/api/v1/limits/sending_domain/brand.example")
    assert response.status_code == 404
    assert response.get_json()["error"]["field"] == "key"


def test_bad_limit_requests_name_the_field_and_store_nothing(api, session):
    cases = [
        ("/api/v1/limits/galaxy/x.example", {"per_day": 1}, 422, "scope"),
        ("/api/v1/limits/account/abc", {"per_day": 1}, 422, "key"),
        ("/api/v1/limits/account/999", {"per_day": 1}, 404, "key"),
        ("/api/v1/limits/recipient_domain/not-a-domain", {"per_day": 1}, 422, "key"),
        ("/api/v1/limits/recipient_domain/x.example", {"per_day": -1}, 422, "per_day"),
        ("/api/v1/limits/recipient_domain/x.example", {"per_day": "many"}, 422, "per_day"),
        ("/api/v1/limits/recipient_domain/x.example", {}, 422, "per_minute"),
        ("/api/v1/limits/recipient_domain/x.example", {"per_week": 3}, 422, "per_week"),
    ]
    for path, body, status, field in cases:
        response = api.put(path, json=body)
        assert response.status_code == status, (path, body, response.get_json())
        assert response.get_json()["error"]["field"] == field, (path, body)
    assert session.execute(select(LimitOverride)).first() is None


def test_limits_need_an_api_key(client):
    assert client.get("/api/v1/limits").status_code == 401
    assert client.put("/api/v1/limits/system/*", json={"per_minute": 1}).status_code == 401
