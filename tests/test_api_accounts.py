"""/api/v1/accounts: presets, secrets, pool state, pause/resume, delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy import select

from app.crypto import SecretBox
from app.extensions import db
from app.models import Account, Event
from rotator.limiter import Limiter, Scope, Window

GMAIL = {"name": "g1", "provider": "gmail", "email": "Ana@Example.COM", "password": "app-pw"}


def _account_row(session, account_id):
    session.expire_all()
    return session.get(Account, account_id)


def _events(session, kind):
    return session.execute(select(Event).where(Event.type == kind)).scalars().all()


def test_creating_a_gmail_account_fills_the_preset(api, session):
    response = api.post("/api/v1/accounts", json=GMAIL)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["host"] == "smtp.gmail.com"
    assert body["port"] == 587
    assert body["security"] == "starttls"
    assert body["daily_limit"] == 500
    assert body["username"] == "Ana@example.com"
    assert body["email"] == "Ana@example.com"
    assert body["sending_domain"] == "example.com"
    assert body["status"] == "active"
    assert body["has_password"] is True
    assert body["warmup"] is True and body["warmup_day"] == 1


def test_the_password_is_stored_encrypted_and_never_returned(api, session, settings):
    response = api.post("/api/v1/accounts", json=GMAIL)
    assert "app-pw" not in response.get_data(as_text=True)
    assert "password" not in response.get_json()
    row = _account_row(session, response.get_json()["id"])
    assert b"app-pw" not in row.secret_encrypted
    box = SecretBox(settings.credentials_key.get_secret_value())
    assert box.decrypt(row.secret_encrypted) == "app-pw"
    listed = api.get("/api/v1/accounts").get_data(as_text=True)
    assert "app-pw" not in listed and "secret" not in listed


def test_sendgrid_logs_in_as_apikey(api):
    body = api.post(
        "/api/v1/accounts",
        json={"name": "sg", "provider": "sendgrid", "email": "a@b.example", "password": "SG.x"},
    ).get_json()
    assert (body["host"], body["username"], body["daily_limit"]) == (
        "smtp.sendgrid.net",
        "apikey",
        100,
    )


def test_given_values_override_the_preset(api):
    response = api.post(
        "/api/v1/accounts",
        json={
            **GMAIL,
            "host": "smtp-relay.gmail.com",
            "port": 465,
            "security": "tls",
            "username": "relay-user",
            "daily_limit": 2000,
            "per_minute_limit": 5,
            "from_name": "Ana from Example",
            "tags": ["eu", "warm", "eu"],
        },
    )
    body = response.get_json()
    assert response.status_code == 201
    assert (body["host"], body["port"], body["security"]) == ("smtp-relay.gmail.com", 465, "tls")
    assert (body["username"], body["daily_limit"], body["per_minute_limit"]) == (
        "relay-user",
        2000,
        5,
    )
    assert body["from_name"] == "Ana from Example"
    assert body["tags"] == ["eu", "warm"]


def test_a_postfix_relay_needs_a_host_but_no_password(api):
    response = api.post(
        "/api/v1/accounts", json={"name": "pf", "provider": "postfix", "email": "n@ours.example"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "host"

    response = api.post(
        "/api/v1/accounts",
        json={"name": "pf", "provider": "postfix", "email": "n@ours.example", "host": "10.0.0.5"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert (body["host"], body["port"], body["has_password"], body["username"]) == (
        "10.0.0.5",
        25,
        False,
        None,
    )


def test_gmail_without_a_password_is_refused_naming_the_field(api):
    response = api.post("/api/v1/accounts", json={**GMAIL, "password": None})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "password"


def test_an_unknown_provider_is_refused_naming_the_field(api):
    response = api.post("/api/v1/accounts", json={**GMAIL, "provider": "mailchimp"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "provider"
    assert "gmail" in error["message"]


def test_a_new_account_starts_at_the_warmup_ramp_unless_warmup_is_off(api, settings):
    ramped = api.post("/api/v1/accounts", json=GMAIL).get_json()
    full = api.post("/api/v1/accounts", json={**GMAIL, "name": "g2", "warmup": False}).get_json()
    assert ramped["cap_today"] == settings.warmup_start
    assert full["cap_today"] == 500
    assert full["warmup"] is False


def test_a_duplicate_name_is_a_conflict(api):
    api.post("/api/v1/accounts", json=GMAIL)
    response = api.post("/api/v1/accounts", json=GMAIL)
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "name"


def test_sent_today_is_the_limiters_day_window(api, factory, redis_client):
    busy, idle = factory.create_account(), factory.create_account()
    limiter = Limiter(redis_client)
    limiter.restore({}, epoch="built")  # the windows are intact
    for _ in range(3):
        assert limiter.reserve([Window(Scope.ACCOUNT, str(busy.id), 86400, 100)]).allowed
    items = {a["id"]: a for a in api.get("/api/v1/accounts").get_json()["items"]}
    assert items[busy.id]["sent_today"] == 3
    assert items[idle.id]["sent_today"] == 0
    assert api.get(f"/api/v1/accounts/{busy.id}").get_json()["sent_today"] == 3


def test_listing_reads_all_usage_in_one_limiter_call(api, factory, monkeypatch, redis_client):
    Limiter(redis_client).restore({}, epoch="built")
    for _ in range(4):
        factory.create_account()
    calls = []

    class CountingLimiter(Limiter):
        def used(self, windows, **kwargs):
            calls.append(len(windows))
            return super().used(windows, **kwargs)

    monkeypatch.setattr("app.services.limits.Limiter", CountingLimiter)
    assert len(api.get("/api/v1/accounts").get_json()["items"]) == 4
    assert calls == [4]


def _sent(factory, account, n):
    campaign = factory.create_campaign(status="running")
    rows = factory.create_recipients(campaign, [f"r{i}@to.example" for i in range(n)])
    for row in rows:
        db.session.add(
            Event(type="sent", campaign_id=campaign.id, recipient_id=row.id, account_id=account.id)
        )
    db.session.commit()


def test_sent_today_comes_from_the_database_when_redis_is_down(api, app, factory, monkeypatch):
    account = factory.create_account()
    _sent(factory, account, 2)
    monkeypatch.setitem(
        app.extensions, "redis", Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    )
    response = api.get("/api/v1/accounts")
    assert response.status_code == 200
    assert response.get_json()["items"][0]["sent_today"] == 2


def test_sent_today_comes_from_the_database_when_redis_lost_the_windows(api, factory, redis_client):
    account = factory.create_account()
    _sent(factory, account, 3)
    redis_client.flushdb()  # a restart without persistence: no windows, no epoch
    assert api.get(f"/api/v1/accounts/{account.id}").get_json()["sent_today"] == 3


def test_unknown_and_malformed_ids_are_404(api):
    for path in ("/api/v1/accounts/999", "/api/v1/accounts/abc", "/api/v1/accounts/99999999999"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


def test_patch_changes_fields_and_reencrypts_a_new_password(api, session, settings):
    account_id = api.post("/api/v1/accounts", json=GMAIL).get_json()["id"]
    response = api.patch(
        f"/api/v1/accounts/{account_id}",
        json={
            "email": "bob@new.example",
            "password": "new-pw",
            "daily_limit": 300,
            "warmup": False,
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["email"], body["sending_domain"], body["cap_today"]) == (
        "bob@new.example",
        "new.example",
        300,
    )
    row = _account_row(session, account_id)
    box = SecretBox(settings.credentials_key.get_secret_value())
    assert box.decrypt(row.secret_encrypted) == "new-pw"
    assert row.provider == "gmail"


def test_patch_cannot_change_the_provider(api):
    account_id = api.post("/api/v1/accounts", json=GMAIL).get_json()["id"]
    response = api.patch(f"/api/v1/accounts/{account_id}", json={"provider": "sendgrid"})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "provider"


def test_patch_cannot_remove_a_password_the_provider_requires(api):
    account_id = api.post("/api/v1/accounts", json=GMAIL).get_json()["id"]
    response = api.patch(f"/api/v1/accounts/{account_id}", json={"password": None})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "password"


def test_patch_to_a_taken_name_is_a_conflict(api):
    api.post("/api/v1/accounts", json=GMAIL)
    other = api.post("/api/v1/accounts", json={**GMAIL, "name": "g2"}).get_json()["id"]
    response = api.patch(f"/api/v1/accounts/{other}", json={"name": "g1"})
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "name"


def test_pause_records_the_reason_and_an_event(api, factory, session):
    account = factory.create_account()
    response = api.post(f"/api/v1/accounts/{account.id}/pause")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["paused_reason"], body["paused_until"]) == (
        "paused",
        "paused by operator",
        None,
    )
    [event] = _events(session, "account_paused")
    assert event.account_id == account.id


def test_pause_takes_a_reason_and_an_end(api, factory):
    account = factory.create_account()
    until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    body = api.post(
        f"/api/v1/accounts/{account.id}/pause",
        json={"reason": "provider maintenance", "until": until.isoformat()},
    ).get_json()
    assert body["paused_reason"] == "provider maintenance"
    assert datetime.fromisoformat(body["paused_until"]) == until


def test_pause_until_a_past_time_is_refused(api, factory):
    account = factory.create_account()
    response = api.post(
        f"/api/v1/accounts/{account.id}/pause", json={"until": "2001-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "until"


@pytest.mark.parametrize(
    ("offset", "message"),
    [("+22:41", "15:59"), ("+16:00", "15:59"), ("-16:00", "15:59"), ("+05:60", "15:59")],
)
def test_pause_until_an_offset_postgresql_cannot_store_is_refused(api, factory, offset, message):
    account = factory.create_account()
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    response = api.post(
        f"/api/v1/accounts/{account.id}/pause", json={"until": soon.isoformat() + offset}
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "until" and message in error["message"]


@pytest.mark.parametrize("offset", ["+15:59", "-15:59", "+05:30", "Z", ""])
def test_pause_until_is_stored_in_utc_and_a_naive_time_is_utc(api, factory, session, offset):
    account = factory.create_account()
    soon = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    response = api.post(
        f"/api/v1/accounts/{account.id}/pause", json={"until": soon.isoformat() + offset}
    )
    assert response.status_code == 200, response.get_json()
    expected = datetime.fromisoformat(soon.isoformat() + (offset or "Z")).astimezone(UTC)
    until = datetime.fromisoformat(response.get_json()["paused_until"])
    assert until == expected and until.utcoffset() == timedelta(0)
    session.expire_all()
    assert session.get(Account, account.id).paused_until == expected


@pytest.mark.parametrize(
    "until", ["2099-01-01T00:00:00Z", "9999-12-31T23:59:59-15:59", "0001-01-01T00:00:00+15:59"]
)
def test_pause_until_far_ahead_or_out_of_range_is_refused(api, factory, until):
    account = factory.create_account()
    response = api.post(f"/api/v1/accounts/{account.id}/pause", json={"until": until})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "until"


def test_a_disabled_account_cannot_be_paused(api, factory):
    account = factory.create_account(status="disabled", paused_reason="535 auth failed")
    response = api.post(f"/api/v1/accounts/{account.id}/pause")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "invalid_transition"
    assert "disabled" in error["message"]


def test_resume_clears_the_pause_and_the_failure_count(api, factory, session):
    account = factory.create_account(
        status="paused",
        paused_reason="3 consecutive failures",
        paused_until=datetime.now(UTC) + timedelta(hours=20),
        consecutive_failures=3,
    )
    body = api.post(f"/api/v1/accounts/{account.id}/resume").get_json()
    assert (body["status"], body["paused_reason"], body["paused_until"]) == ("active", None, None)
    assert body["consecutive_failures"] == 0
    [event] = _events(session, "account_resumed")
    assert event.account_id == account.id


def test_an_operator_may_resume_a_disabled_account(api, factory):
    account = factory.create_account(status="disabled", paused_reason="535 auth failed")
    response = api.post(f"/api/v1/accounts/{account.id}/resume")
    assert response.status_code == 200
    assert response.get_json()["status"] == "active"


def test_resuming_an_active_account_is_a_conflict(api, factory, session):
    account = factory.create_account()
    response = api.post(f"/api/v1/accounts/{account.id}/resume")
    assert response.status_code == 409
    assert "active" in response.get_json()["error"]["message"]
    assert _events(session, "account_resumed") == []


def test_pause_and_resume_of_an_unknown_account_are_404(api):
    assert api.post("/api/v1/accounts/42/pause").status_code == 404
    assert api.post("/api/v1/accounts/42/resume").status_code == 404


def test_delete_removes_the_account(api, factory, session):
    account = factory.create_account()
    response = api.delete(f"/api/v1/accounts/{account.id}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert _account_row(session, account.id) is None
    assert api.get(f"/api/v1/accounts/{account.id}").status_code == 404


def test_delete_is_refused_while_messages_are_in_flight_on_the_account(api, factory, session):
    account = factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"], status="queued", account_id=account.id)
    response = api.delete(f"/api/v1/accounts/{account.id}")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "account_busy"
    assert _account_row(session, account.id) is not None


def test_delete_is_allowed_once_its_messages_are_sent(api, factory):
    account = factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"], status="sent", account_id=account.id)
    assert api.delete(f"/api/v1/accounts/{account.id}").status_code == 204


def test_delete_of_an_unknown_account_is_404(api):
    assert api.delete("/api/v1/accounts/7").status_code == 404
