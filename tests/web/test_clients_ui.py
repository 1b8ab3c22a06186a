"""The client switcher: a user in several clients works in one at a time and sees only its
campaigns; another client's campaign answers 404 like a missing one; an admin sees all."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from app.models import UserRole
from tests.web.test_login import PASSWORD, csrf_of, sign_in


@pytest.fixture
def two_clients(app):
    # Not the `factory` fixture: it keeps an app context pushed for the whole test, which
    # the test client's requests would then share (and with it `g`, CSRF token included).
    with app.app_context():
        return _two_clients(app)


def _two_clients(app):
    from app.db import unit_of_work
    from app.models import User
    from app.services.clients import add_member
    from tests import factories as factory

    acme = factory.create_client(name="Acme")
    globex = factory.create_client(name="Globex")
    hidden = factory.create_client(name="Hidden")
    ours = {
        c.name: factory.create_campaign(client_id=c.id, name=f"{c.name} launch")
        for c in (acme, globex, hidden)
    }
    with app.app_context(), unit_of_work() as session:
        user = User(email="ops@example.com", password_hash=generate_password_hash(PASSWORD))
        session.add(user)
        add_member(session, user, acme.id)
        add_member(session, user, globex.id)
        admin = User(email="admin@example.com", password_hash=generate_password_hash(PASSWORD))
        session.add(admin)
        add_member(session, admin, None, UserRole.ADMIN)
    ids = {name: campaign.id for name, campaign in ours.items()}
    return {"acme": acme.id, "globex": globex.id, "hidden": hidden.id, "campaigns": ids}


def switch(client, client_id):
    token = csrf_of(client.get("/campaigns").get_data(as_text=True))
    return client.post("/client", data={"client_id": str(client_id), "csrf_token": token})


def test_a_member_of_two_clients_switches_between_them(client, two_clients):
    sign_in(client)
    page = client.get("/campaigns").get_data(as_text=True)
    assert 'name="client_id"' in page and ">Hidden<" not in page
    assert "Acme launch" in page and "Globex launch" not in page
    acme_campaign = two_clients["campaigns"]["Acme"]
    assert client.get(f"/campaigns/{acme_campaign}").status_code == 200

    assert switch(client, two_clients["globex"]).status_code == 302
    page = client.get("/campaigns").get_data(as_text=True)
    assert "Globex launch" in page and "Acme launch" not in page
    # The other client's campaign is "not found", exactly like a missing one.
    assert client.get(f"/campaigns/{acme_campaign}").status_code == 404
    assert client.get(f"/campaigns/{acme_campaign}/live").status_code == 404


def test_a_client_the_user_is_not_in_cannot_be_chosen(client, two_clients):
    sign_in(client)
    assert switch(client, two_clients["hidden"]).status_code == 404
    hidden_campaign = two_clients["campaigns"]["Hidden"]
    assert client.get(f"/campaigns/{hidden_campaign}").status_code == 404


def test_an_admin_sees_every_client(client, two_clients):
    sign_in(client, email="admin@example.com")
    page = client.get("/campaigns").get_data(as_text=True)
    for name in ("Acme", "Globex", "Hidden"):
        assert f">{name}</option>" in page
    assert switch(client, two_clients["hidden"]).status_code == 302
    assert "Hidden launch" in client.get("/campaigns").get_data(as_text=True)
