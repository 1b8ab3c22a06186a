"""An API key acts for its client; an admin key may act for another one named by
X-Sendfleet-Client (unknown: 404 naming the header; a non-admin key sending it: 403)."""

from __future__ import annotations

from sqlalchemy import select

from app.api.auth import create_key
from app.db import unit_of_work
from app.models import Account, Campaign

ACCOUNT = {"name": "p1", "provider": "postfix", "host": "relay.example", "email": "a@s.example"}
CAMPAIGN = {"name": "c", "subject": "Hi", "body_text": "Hello"}
HEADER = "X-Sendfleet-Client"


def _key(app, *, client_id=None, is_admin=False):
    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "k", client_id=client_id, is_admin=is_admin)
    return {"Authorization": f"Bearer {key}"}


def _account_owner(session, name):
    return session.execute(select(Account.client_id).where(Account.name == name)).scalar_one()


def test_a_key_acts_for_its_own_client(app, client, factory, session):
    other = factory.create_client(name="Other")
    response = client.post("/api/v1/accounts", json=ACCOUNT, headers=_key(app, client_id=other.id))
    assert response.status_code == 201, response.get_json()
    assert _account_owner(session, "p1") == other.id


def test_a_key_without_a_client_belongs_to_the_default_client(app, client, session):
    response = client.post("/api/v1/campaigns", json=CAMPAIGN, headers=_key(app))
    assert response.status_code == 201, response.get_json()
    assert session.execute(select(Campaign.client_id)).scalar_one() == 1


def test_an_admin_key_acts_for_the_client_in_the_header(app, client, factory, session):
    other = factory.create_client(name="Other")
    headers = {**_key(app, is_admin=True), HEADER: str(other.id)}
    response = client.post("/api/v1/accounts", json=ACCOUNT, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert _account_owner(session, "p1") == other.id


def test_an_admin_key_without_the_header_acts_for_its_own_client(app, client, factory, session):
    factory.create_client(name="Other")
    response = client.post("/api/v1/accounts", json=ACCOUNT, headers=_key(app, is_admin=True))
    assert response.status_code == 201
    assert _account_owner(session, "p1") == 1


def test_an_unknown_client_in_the_header_is_404_naming_the_header(app, client, session):
    admin = _key(app, is_admin=True)
    for value in ("999", "abc", "", "99999999999999999999"):
        response = client.post("/api/v1/accounts", json=ACCOUNT, headers={**admin, HEADER: value})
        assert response.status_code == 404, value
        error = response.get_json()["error"]
        assert error["field"] == HEADER and HEADER in error["message"], error
    assert session.execute(select(Account)).first() is None


def test_a_non_admin_key_sending_the_header_is_403(app, client, factory, session):
    other = factory.create_client(name="Other")
    headers = {**_key(app), HEADER: str(other.id)}
    response = client.post("/api/v1/accounts", json=ACCOUNT, headers=headers)
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "forbidden" and error["field"] == HEADER
    assert session.execute(select(Account)).first() is None
    # Even naming its own client: the header is an admin's tool.
    own = client.get("/api/v1/accounts", headers={**_key(app), HEADER: "1"})
    assert own.status_code == 403


def test_two_clients_may_each_have_an_account_of_the_same_name(app, client, factory):
    other = factory.create_client(name="Other")
    first = client.post("/api/v1/accounts", json=ACCOUNT, headers=_key(app))
    second = client.post("/api/v1/accounts", json=ACCOUNT, headers=_key(app, client_id=other.id))
    again = client.post("/api/v1/accounts", json=ACCOUNT, headers=_key(app))
    assert (first.status_code, second.status_code, again.status_code) == (201, 201, 409)
    assert again.get_json()["error"]["field"] == "name"
