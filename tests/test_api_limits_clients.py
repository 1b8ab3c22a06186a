"""/limits with clients: a key sees and sets its own client's limits; the system scope
and a client's own caps (the `client` scope) are set with an admin key."""

from __future__ import annotations

from sqlalchemy import select

from app.api.auth import create_key
from app.db import unit_of_work
from app.models import LimitOverride
from tests.conftest import ApiClient
from tests.pipeline import dispatch

HEADER = "X-Sendfleet-Client"


def _entry(body, scope, key):
    return next((e for e in body["scopes"][scope] if e["key"] == key), None)


def _key_for(app, client, client_id) -> ApiClient:
    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "b", client_id=client_id)
    return ApiClient(client, key)


def _overrides(session):
    session.expire_all()
    rows = session.execute(select(LimitOverride).order_by(LimitOverride.id)).scalars()
    return [(r.scope, r.key, r.client_id, r.per_minute, r.per_day) for r in rows]


def test_system_and_client_limits_need_an_admin_key(api, admin_api, session):
    for path in ("/api/v1/limits/system/*", "/api/v1/limits/client/1"):
        refused = api.put(path, json={"per_day": 5})
        assert refused.status_code == 403, path
        error = refused.get_json()["error"]
        assert (error["code"], error["field"]) == ("forbidden", "scope")
        assert "admin key" in error["message"]
        assert api.delete(path).status_code == 403
    assert _overrides(session) == []
    system = admin_api.put("/api/v1/limits/system/*", json={"per_minute": 50})
    assert system.status_code == 200 and system.get_json()["client_id"] is None
    assert _overrides(session) == [("system", "*", None, 50, None)]


def test_an_admin_sets_a_clients_caps_and_the_client_sees_them(app, client, admin_api, factory):
    other = factory.create_client(name="B")
    theirs = _key_for(app, client, other.id)
    put = admin_api.put(f"/api/v1/limits/client/{other.id}", json={"per_day": 300})
    assert put.status_code == 200
    assert put.get_json() == {
        "scope": "client", "key": str(other.id), "client_id": other.id,
        "per_minute": None, "per_day": 300,
    }  # fmt: skip
    seen = theirs.get("/api/v1/limits").get_json()
    assert seen["client_id"] == other.id
    entry = _entry(seen, "client", str(other.id))
    assert (entry["per_day"], entry["override"]) == (300, {"per_minute": None, "per_day": 300})
    # The default client has no cap: its entry shows the (unset) defaults.
    own = admin_api.get("/api/v1/limits").get_json()
    assert _entry(own, "client", "1")["per_day"] is None
    assert _entry(own, "client", str(other.id)) is None
    assert admin_api.put("/api/v1/limits/client/999", json={"per_day": 1}).status_code == 404


def test_another_clients_account_is_404_like_a_missing_one(app, client, api, factory, session):
    other = factory.create_client(name="B")
    theirs = factory.create_account(client_id=other.id)
    hidden = api.put(f"/api/v1/limits/account/{theirs.id}", json={"per_day": 1})
    missing = api.put("/api/v1/limits/account/99999", json={"per_day": 1})
    assert hidden.status_code == missing.status_code == 404
    assert hidden.get_json()["error"]["message"] == f"no account {theirs.id}"
    assert missing.get_json()["error"]["message"] == "no account 99999"
    assert _overrides(session) == []
    assert _entry(api.get("/api/v1/limits").get_json(), "account", str(theirs.id)) is None


def test_domain_overrides_are_each_clients_own(app, client, api, factory, session):
    other = factory.create_client(name="B")
    theirs = _key_for(app, client, other.id)
    assert (
        api.put("/api/v1/limits/recipient_domain/corp.example", json={"per_day": 3}).status_code
        == 200
    )
    assert (
        theirs.put("/api/v1/limits/recipient_domain/corp.example", json={"per_day": 9}).status_code
        == 200
    )
    assert (
        theirs.put("/api/v1/limits/sending_domain/b.example", json={"per_day": 40}).status_code
        == 200
    )
    assert _overrides(session) == [
        ("recipient_domain", "corp.example", 1, None, 3),
        ("recipient_domain", "corp.example", other.id, None, 9),
        ("sending_domain", "b.example", other.id, None, 40),
    ]
    mine = api.get("/api/v1/limits").get_json()
    assert _entry(mine, "recipient_domain", "corp.example")["per_day"] == 3
    assert _entry(mine, "sending_domain", "b.example") is None
    # Deleting mine leaves theirs.
    assert api.delete("/api/v1/limits/recipient_domain/corp.example").status_code == 204
    assert api.delete("/api/v1/limits/sending_domain/b.example").status_code == 404
    assert [r[2] for r in _overrides(session)] == [other.id, other.id]


def test_the_client_entry_shows_what_the_client_used(app, admin_api, factory):
    factory.create_account(per_minute_limit=1000)
    factory.create_running_campaign([f"u{i}@gmail.com" for i in range(4)])
    assert admin_api.put("/api/v1/limits/client/1", json={"per_day": 3}).status_code == 200
    assert dispatch(app).queued == 3
    entry = _entry(admin_api.get("/api/v1/limits").get_json(), "client", "1")
    assert entry["used"] == {"minute": None, "day": 3}


def test_an_admin_sees_another_clients_limits_with_the_header(app, client, admin_api, factory):
    other = factory.create_client(name="B")
    account = factory.create_account(client_id=other.id)
    body = admin_api.get("/api/v1/limits", headers={HEADER: str(other.id)}).get_json()
    assert body["client_id"] == other.id
    assert _entry(body, "account", str(account.id)) is not None
    put = admin_api.put(
        f"/api/v1/limits/account/{account.id}", json={"per_day": 5}, headers={HEADER: str(other.id)}
    )
    assert put.status_code == 200 and put.get_json()["client_id"] == other.id
