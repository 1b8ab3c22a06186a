"""/api/v1/clients: admin keys list, create, change, pause and resume any client (with or
without X-Sendfleet-Client); any other key sees only its own client, and another client's id
answers exactly like an id that does not exist."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.auth import create_key
from app.db import unit_of_work
from app.errors import InvalidTransition
from app.extensions import db
from app.models import Client, Event
from app.services import clients as client_service

HEADER = "X-Sendfleet-Client"
STATS_ZERO = dict.fromkeys(
    ("sent", "bounced", "deferred", "failed", "unsubscribed", "complained"), 0
)
FIELDS = {"id", "name", "status", "paused_reason", "telegram_chat_id", "created_at", "updated_at"}


def _key(app, *, client_id=None, is_admin=False, act_for=None):
    with app.app_context(), unit_of_work() as session:
        row, key = create_key(session, "k", client_id=client_id, is_admin=is_admin)
    headers = {"Authorization": f"Bearer {key}"}
    if act_for is not None:
        headers[HEADER] = str(act_for)
    return headers, row.id


@pytest.fixture
def other(factory):
    return factory.create_client(name="Other")


@pytest.fixture
def admin(app):
    return _key(app, is_admin=True)[0]


@pytest.fixture
def plain(app):
    """A key of the default client (id 1) that is not an admin's."""
    return _key(app)[0]


def _events(session, client_id=None):
    session.expire_all()
    query = select(Event).order_by(Event.id)
    if client_id is not None:
        query = query.where(Event.client_id == client_id)
    return session.execute(query).scalars().all()


def _add_events(session, type_, n, at, **ids):
    session.add_all(
        Event(type=type_, created_at=datetime.fromisoformat(at), **ids) for _ in range(n)
    )
    session.commit()


def _default_name(app):
    return app.extensions["settings"].default_client_name


def _error(response, status):
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


# --- listing ----------------------------------------------------------------------------


def test_an_admin_key_lists_every_client_with_or_without_the_header(app, client, other):
    for headers in (_key(app, is_admin=True)[0], _key(app, is_admin=True, act_for=other.id)[0]):
        response = client.get("/api/v1/clients", headers=headers)
        assert response.status_code == 200, response.get_json()
        items = response.get_json()["items"]
        assert [c["name"] for c in items] == [_default_name(app), "Other"]
        assert set(items[1]) == FIELDS
        assert items[1]["status"] == "active" and items[1]["paused_reason"] is None


def test_a_plain_key_lists_only_its_own_client(app, client, other):
    for client_id, name in ((1, _default_name(app)), (other.id, "Other")):
        headers, _ = _key(app, client_id=client_id)
        items = client.get("/api/v1/clients", headers=headers).get_json()["items"]
        assert [(c["id"], c["name"]) for c in items] == [(client_id, name)]


# --- creating ---------------------------------------------------------------------------


def test_an_admin_key_creates_a_client(client, admin, session):
    body = {"name": "  Acme  ", "telegram_chat_id": "-1001234567890"}
    response = client.post("/api/v1/clients", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert set(created) == FIELDS
    assert created["name"] == "Acme" and created["status"] == "active"
    assert created["telegram_chat_id"] == "-1001234567890"
    assert datetime.fromisoformat(created["created_at"]).tzinfo is not None
    row = session.get(Client, created["id"])
    assert (row.name, row.telegram_chat_id) == ("Acme", "-1001234567890")


def test_an_admin_key_acting_for_another_client_still_creates_a_client(app, client, other, session):
    headers, _ = _key(app, is_admin=True, act_for=other.id)
    response = client.post("/api/v1/clients", json={"name": "@brand"}, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["telegram_chat_id"] is None
    assert session.execute(select(Client.name).order_by(Client.id)).scalars().all()[-1] == "@brand"


def test_creating_a_client_needs_an_admin_key_even_with_a_bad_body(client, plain, session):
    for body in ({"name": "Acme"}, {"name": ""}, {"nope": 1}):
        error = _error(client.post("/api/v1/clients", json=body, headers=plain), 403)
        assert error["code"] == "forbidden" and "admin key" in error["message"], error
    assert session.execute(select(Client.name)).scalars().all() == [
        _default_name(client.application)
    ]


def test_a_duplicate_name_is_409_and_creates_nothing(client, admin, other, session):
    for name in ("Other", " Other "):
        error = _error(client.post("/api/v1/clients", json={"name": name}, headers=admin), 409)
        assert error["code"] == "conflict" and error["field"] == "name", error
    assert session.execute(select(Client.id)).scalars().all() == [1, other.id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "ok", "status": "paused"}, "status"),
        ({"name": "ok", "telegram_chat_id": ""}, "telegram_chat_id"),
        ({"name": "ok", "telegram_chat_id": "my chat"}, "telegram_chat_id"),
        ({"name": "ok", "telegram_chat_id": "@abc"}, "telegram_chat_id"),
        ({"name": "ok", "telegram_chat_id": 12345}, "telegram_chat_id"),
        ({"name": "ok", "telegram_chat_id": "-0123"}, "telegram_chat_id"),
    ],
)
def test_bad_client_bodies_are_422_naming_the_field(client, admin, session, body, field):
    error = _error(client.post("/api/v1/clients", json=body, headers=admin), 422)
    assert error["code"] == "invalid" and error["field"] == field, error
    assert session.execute(select(Client.id)).scalars().all() == [1]


def test_a_body_that_is_not_json_is_refused(client, admin):
    response = client.post("/api/v1/clients", data="name=x", headers=admin)
    assert response.status_code == 415
    response = client.post(
        "/api/v1/clients", data="{", headers=admin, content_type="application/json"
    )
    assert _error(response, 400)["code"] == "invalid_json"


# --- reading one ------------------------------------------------------------------------


def test_an_admin_key_reads_any_client_with_or_without_the_header(app, client, other):
    for headers in (_key(app, is_admin=True)[0], _key(app, is_admin=True, act_for=other.id)[0]):
        for client_id in (1, other.id):
            response = client.get(f"/api/v1/clients/{client_id}", headers=headers)
            assert response.status_code == 200, response.get_json()
            assert response.get_json()["id"] == client_id


def test_a_plain_key_reads_its_own_client(app, client, other):
    headers, _ = _key(app, client_id=other.id)
    response = client.get(f"/api/v1/clients/{other.id}", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["name"] == "Other"


@pytest.mark.parametrize("suffix", ["", "/stats"])
def test_another_clients_id_answers_like_a_missing_one(app, client, other, suffix):
    """No existence leak: the body for an existing client of someone else is the body for
    an id no client has, byte for byte."""
    headers, _ = _key(app, client_id=other.id)
    hidden = client.get(f"/api/v1/clients/1{suffix}", headers=headers)
    missing = client.get(f"/api/v1/clients/1{'0' * 5}{suffix}", headers=headers)
    assert _error(hidden, 404)["code"] == "not_found"
    assert _error(missing, 404)["message"] == "no client 100000"
    assert hidden.get_data() == missing.get_data().replace(b"100000", b"1")
    for hidden_id in (1, 100000, 99999999999):  # the same answer for every id but its own
        assert client.get(f"/api/v1/clients/{hidden_id}", headers=headers).status_code == 404


def test_an_admin_key_gets_404_for_a_missing_client(client, admin):
    for path in ("/api/v1/clients/777", "/api/v1/clients/777/stats"):
        error = _error(client.get(path, headers=admin), 404)
        assert error["message"] == "no client 777"


# --- changing ---------------------------------------------------------------------------


def test_an_admin_key_changes_name_and_telegram_chat_and_null_clears_the_chat(
    app, client, other, session
):
    headers, _ = _key(app, is_admin=True, act_for=other.id)
    path = f"/api/v1/clients/{other.id}"
    before = client.get(path, headers=headers).get_json()
    body = {"name": " Renamed ", "telegram_chat_id": "@other_alerts"}
    response = client.patch(path, json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    changed = response.get_json()
    assert (changed["name"], changed["telegram_chat_id"]) == ("Renamed", "@other_alerts")
    assert changed["updated_at"] > before["updated_at"]
    assert changed["created_at"] == before["created_at"]

    cleared = client.patch(path, json={"telegram_chat_id": None}, headers=headers).get_json()
    assert (cleared["name"], cleared["telegram_chat_id"]) == ("Renamed", None)
    unchanged = client.patch(path, json={}, headers=headers)
    assert unchanged.status_code == 200 and unchanged.get_json()["name"] == "Renamed"
    session.expire_all()
    row = session.get(Client, other.id)
    assert (row.name, row.telegram_chat_id) == ("Renamed", None)


def test_a_client_may_keep_its_own_name_but_not_take_anothers(client, admin, other):
    path = f"/api/v1/clients/{other.id}"
    assert client.patch(path, json={"name": "Other"}, headers=admin).status_code == 200
    default = client.application.extensions["settings"].default_client_name
    error = _error(client.patch(path, json={"name": default}, headers=admin), 409)
    assert error["field"] == "name" and default in error["message"]
    assert client.get(path, headers=admin).get_json()["name"] == "Other"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": " "}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"telegram_chat_id": "chat"}, "telegram_chat_id"),
        ({"status": "paused"}, "status"),
        ({"paused_reason": "x"}, "paused_reason"),
    ],
)
def test_bad_changes_are_422_naming_the_field(client, admin, other, body, field):
    response = client.patch(f"/api/v1/clients/{other.id}", json=body, headers=admin)
    assert _error(response, 422)["field"] == field
    assert client.get(f"/api/v1/clients/{other.id}", headers=admin).get_json()["name"] == "Other"


def test_changing_a_missing_client_is_404(client, admin):
    error = _error(client.patch("/api/v1/clients/404", json={"name": "x"}, headers=admin), 404)
    assert error["message"] == "no client 404"


def test_changing_a_client_needs_an_admin_key_even_its_own(app, client, other):
    headers, _ = _key(app, client_id=other.id)
    for client_id in (other.id, 1, 404):
        response = client.patch(f"/api/v1/clients/{client_id}", json={"name": "x"}, headers=headers)
        assert "admin key" in _error(response, 403)["message"]
    assert client.get(f"/api/v1/clients/{other.id}", headers=headers).get_json()["name"] == "Other"


# --- pause and resume -------------------------------------------------------------------


def test_pause_with_a_reason_then_resume_writes_one_event_each(app, client, other, session):
    headers, key_id = _key(app, is_admin=True)
    path = f"/api/v1/clients/{other.id}"
    response = client.post(f"{path}/pause", json={"reason": " invoice overdue "}, headers=headers)
    assert response.status_code == 200, response.get_json()
    paused = response.get_json()
    assert (paused["status"], paused["paused_reason"]) == ("paused", "invoice overdue")
    assert client.get(path, headers=headers).get_json()["status"] == "paused"

    resumed = client.post(f"{path}/resume", headers=headers)
    assert resumed.status_code == 200, resumed.get_json()
    assert (resumed.get_json()["status"], resumed.get_json()["paused_reason"]) == ("active", None)

    events = _events(session)
    assert [(e.type, e.client_id) for e in events] == [
        ("client_paused", other.id),
        ("client_resumed", other.id),
    ]
    assert events[0].data == {"source": "api", "api_key_id": key_id, "reason": "invoice overdue"}
    assert events[1].data == {"source": "api", "api_key_id": key_id}
    assert events[0].campaign_id is None and events[0].account_id is None


def test_pause_without_a_body_gives_the_default_reason(client, admin, session):
    for kwargs in ({}, {"json": {}}):
        response = client.post("/api/v1/clients/1/pause", headers=admin, **kwargs)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["paused_reason"] == "paused by an operator"
        assert client.post("/api/v1/clients/1/resume", headers=admin).status_code == 200
    assert [e.data["reason"] for e in _events(session) if e.type == "client_paused"] == [
        "paused by an operator"
    ] * 2


def test_an_admin_key_acting_for_one_client_pauses_another(app, client, other, session):
    headers, _ = _key(app, is_admin=True, act_for=other.id)
    response = client.post("/api/v1/clients/1/pause", json={"reason": "x"}, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert [(e.type, e.client_id) for e in _events(session)] == [("client_paused", 1)]
    assert client.get(f"/api/v1/clients/{other.id}", headers=headers).get_json()["status"] == (
        "active"
    )


def test_pausing_a_paused_or_resuming_an_active_client_is_409_and_writes_nothing(
    client, admin, other, session
):
    path = f"/api/v1/clients/{other.id}"
    error = _error(client.post(f"{path}/resume", headers=admin), 409)
    assert error["code"] == "invalid_transition" and "already active" in error["message"]
    assert client.post(f"{path}/pause", json={"reason": "first"}, headers=admin).status_code == 200
    error = _error(client.post(f"{path}/pause", json={"reason": "second"}, headers=admin), 409)
    assert error["code"] == "invalid_transition" and "already paused" in error["message"]
    assert client.get(path, headers=admin).get_json()["paused_reason"] == "first"
    assert [e.type for e in _events(session)] == ["client_paused"]


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_and_resume_of_a_missing_client_are_404(client, admin, session, action):
    error = _error(client.post(f"/api/v1/clients/404/{action}", headers=admin), 404)
    assert error["message"] == "no client 404"
    assert _events(session) == []


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_and_resume_need_an_admin_key(client, plain, session, action):
    for client_id in (1, 404):
        error = _error(client.post(f"/api/v1/clients/{client_id}/{action}", headers=plain), 403)
        assert "admin key" in error["message"]
    assert _events(session) == []


@pytest.mark.parametrize(
    "body", [{"reason": ""}, {"reason": "  "}, {"reason": "x" * 501}, {"reason": 1}, {"x": 1}]
)
def test_a_bad_pause_body_is_422_and_pauses_nothing(client, admin, session, body):
    response = client.post("/api/v1/clients/1/pause", json=body, headers=admin)
    assert _error(response, 422)["field"] in {"reason", "x"}
    assert client.get("/api/v1/clients/1", headers=admin).get_json()["status"] == "active"
    assert _events(session) == []


def test_two_concurrent_pauses_pause_once_and_write_one_event(app, other):
    """Two connections: the second UPDATE waits for the first one's row lock, then finds
    the client paused and matches nothing."""
    with app.app_context():
        engine = db.engine
    first, second = Session(engine), Session(engine)
    outcome: dict[str, object] = {}
    try:
        client_service.pause_client(first, other.id, reason="first")  # holds the row lock

        def pause_again() -> None:
            try:
                client_service.pause_client(second, other.id, reason="second")
                second.commit()
                outcome["second"] = "paused"
            except InvalidTransition as exc:
                outcome["second"] = exc
            finally:
                second.rollback()

        thread = threading.Thread(target=pause_again)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), "the second pause must wait for the first transaction"
        first.commit()
        thread.join(timeout=10)
    finally:
        first.close()
        second.close()
    assert isinstance(outcome["second"], InvalidTransition), outcome
    with app.app_context():
        reasons = db.session.execute(select(Event.data["reason"].astext)).scalars().all()
        assert reasons == ["first"]
        assert db.session.get(Client, other.id).paused_reason == "first"


# --- stats (figures in tests/test_client_stats.py) -------------------------------------


def test_stats_answer_the_key_of_the_client_and_admin_keys(app, client, other):
    own, _ = _key(app, client_id=other.id)
    for headers in (own, _key(app, is_admin=True)[0], _key(app, is_admin=True, act_for=1)[0]):
        response = client.get(f"/api/v1/clients/{other.id}/stats?days=7", headers=headers)
        assert response.status_code == 200, response.get_json()
        stats = response.get_json()
        assert stats["client_id"] == other.id and stats["days"] == 7
        assert len(stats["per_day"]) == 7
        assert set(stats) == {
            "client_id", "days", "since", "until", "counts", "campaigns", "per_day",
            "per_account", "totals", "rates",
        }  # fmt: skip


def test_stats_show_todays_events(api, factory, session):
    """The figures themselves are tested in tests/test_client_stats.py."""
    campaign = factory.create_campaign()
    account = factory.create_account(name="today")
    now = datetime.now(UTC).isoformat()
    _add_events(session, "sent", 3, now, campaign_id=campaign.id, account_id=account.id)
    _add_events(session, "bounced", 1, now, campaign_id=campaign.id, account_id=account.id)
    stats = api.get("/api/v1/clients/1/stats?days=2").get_json()
    assert [d["date"] for d in stats["per_day"]] == [
        (datetime.now(UTC).date() - timedelta(days=1)).isoformat(),
        datetime.now(UTC).date().isoformat(),
    ]
    assert stats["per_day"][-1] == {
        **STATS_ZERO,
        "date": stats["per_day"][-1]["date"],
        "sent": 3,
        "bounced": 1,
    }
    assert stats["per_account"] == [
        {"id": account.id, "name": "today", "sent": 3, "bounced": 1, "failed": 0}
    ]
    assert stats["rates"] == {"bounce_rate": 0.25, "unsubscribe_rate": 0.0, "complaint_rate": 0.0}
    assert stats["since"].endswith(("+00:00", "Z")) and stats["until"] > stats["since"]


def test_stats_default_to_30_days(client, plain):
    stats = client.get("/api/v1/clients/1/stats", headers=plain).get_json()
    assert stats["days"] == 30 and len(stats["per_day"]) == 30


@pytest.mark.parametrize("days", ["0", "367", "-1", "x", "1.5", ""])
def test_stats_days_out_of_range_is_422_naming_days(client, plain, days):
    error = _error(client.get(f"/api/v1/clients/1/stats?days={days}", headers=plain), 422)
    assert error["field"] == "days", error


@pytest.mark.parametrize("days", ["1", "366"])
def test_stats_days_at_their_bounds_are_accepted(client, plain, days):
    response = client.get(f"/api/v1/clients/1/stats?days={days}", headers=plain)
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["per_day"]) == int(days)


def test_every_client_route_wants_a_key(client):
    for method, path in (
        ("get", "/api/v1/clients"),
        ("post", "/api/v1/clients"),
        ("get", "/api/v1/clients/1"),
        ("patch", "/api/v1/clients/1"),
        ("post", "/api/v1/clients/1/pause"),
        ("post", "/api/v1/clients/1/resume"),
        ("get", "/api/v1/clients/1/stats"),
    ):
        assert getattr(client, method)(path).status_code == 401, (method, path)


def test_real_answers_match_their_documented_schemas(app, client, other, factory):
    from tests.test_openapi import _check, _response_schema

    document = client.get("/api/v1/openapi.json").get_json()
    headers = _key(app, is_admin=True)[0]
    factory.create_account(name="a", client_id=other.id)
    base = "/api/v1/clients"
    one = f"{base}/{{client_id}}"
    answers = [
        ("get", base, client.get(base, headers=headers), 200),
        ("post", base, client.post(base, json={"name": "N"}, headers=headers), 201),
        ("post", base, client.post(base, json={"name": "N"}, headers=headers), 409),
        ("post", base, client.post(base, json={"name": "N"}, headers=_key(app)[0]), 403),
        ("get", one, client.get(f"{base}/{other.id}", headers=headers), 200),
        ("get", one, client.get(f"{base}/404", headers=headers), 404),
        ("patch", one, client.patch(f"{base}/{other.id}", json={}, headers=headers), 200),
        ("patch", one, client.patch(f"{base}/1", json={"name": ""}, headers=headers), 422),
        ("post", f"{one}/pause", client.post(f"{base}/1/pause", headers=headers), 200),
        ("post", f"{one}/resume", client.post(f"{base}/1/resume", headers=headers), 200),
        ("post", f"{one}/resume", client.post(f"{base}/1/resume", headers=headers), 409),
        ("get", f"{one}/stats", client.get(f"{base}/{other.id}/stats", headers=headers), 200),
        ("get", f"{one}/stats", client.get(f"{base}/1/stats?days=0", headers=headers), 422),
    ]
    for method, path, response, status in answers:
        assert response.status_code == status, (method, path, response.get_json())
        schema = _response_schema(document, path, method, status)
        _check(document, response.get_json(), schema)
