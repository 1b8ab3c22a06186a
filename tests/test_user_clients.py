"""Which clients a UI user sees (the client switcher) and their role in each: members see
the clients they belong to; an admin of any client sees, and is admin of, every client."""

from __future__ import annotations

import pytest

from app.models import User, UserRole
from app.services.clients import add_member, role_in, visible_clients


@pytest.fixture
def clients(factory):
    """The default client (1) and two more: 2 and 3."""
    return [1, factory.create_client(name="Two").id, factory.create_client(name="Three").id]


def _user(session, email, memberships):
    user = User(email=email, password_hash="x")
    session.add(user)
    for client_id, role in memberships:
        add_member(session, user, client_id, role)
    session.commit()
    return user


def _ids(rows):
    return [c.id for c in rows]


def test_a_member_sees_only_the_clients_they_belong_to(session, clients):
    one, two, three = clients
    alice = _user(session, "alice@x.example", [(two, UserRole.MEMBER)])
    bob = _user(session, "bob@x.example", [(three, UserRole.MEMBER), (one, UserRole.MEMBER)])
    assert _ids(visible_clients(session, alice)) == [two]
    assert _ids(visible_clients(session, bob)) == [one, three]  # ordered by id


def test_a_user_without_memberships_sees_no_client(session, clients):
    nobody = _user(session, "nobody@x.example", [])
    assert visible_clients(session, nobody) == []
    assert [role_in(session, nobody, c) for c in clients] == [None, None, None]


def test_an_admin_of_one_client_sees_every_client_including_new_ones(session, factory, clients):
    one, two, three = clients
    carol = _user(session, "carol@x.example", [(two, UserRole.ADMIN)])
    assert _ids(visible_clients(session, carol)) == [one, two, three]
    four = factory.create_client(name="Four").id
    assert _ids(visible_clients(session, carol)) == [one, two, three, four]


def test_an_admin_and_member_elsewhere_still_sees_everything(session, clients):
    one, two, three = clients
    dave = _user(session, "dave@x.example", [(one, UserRole.MEMBER), (three, UserRole.ADMIN)])
    assert _ids(visible_clients(session, dave)) == [one, two, three]


def test_one_users_memberships_do_not_widen_anothers(session, clients):
    one, two, _ = clients
    _user(session, "admin@x.example", [(one, UserRole.ADMIN)])
    erin = _user(session, "erin@x.example", [(two, UserRole.MEMBER)])
    assert _ids(visible_clients(session, erin)) == [two]
    assert role_in(session, erin, one) is None


def test_role_in_a_client_is_the_memberships_role(session, clients):
    one, two, three = clients
    frank = _user(session, "frank@x.example", [(two, UserRole.MEMBER)])
    assert role_in(session, frank, two) is UserRole.MEMBER
    assert role_in(session, frank, one) is None
    assert role_in(session, frank, three) is None


def test_an_admin_anywhere_is_admin_everywhere_but_not_of_a_missing_client(session, clients):
    one, two, three = clients
    grace = _user(session, "grace@x.example", [(one, UserRole.MEMBER), (two, UserRole.ADMIN)])
    assert [role_in(session, grace, c) for c in clients] == [UserRole.ADMIN] * 3
    assert role_in(session, grace, 999) is None
    assert role_in(session, grace, three) is UserRole.ADMIN


def test_visible_clients_and_role_in_agree(session, clients):
    users = [
        _user(session, "m@x.example", [(clients[0], UserRole.MEMBER)]),
        _user(session, "a@x.example", [(clients[2], UserRole.ADMIN)]),
        _user(session, "n@x.example", []),
    ]
    for user in users:
        seen = set(_ids(visible_clients(session, user)))
        assert seen == {c for c in clients if role_in(session, user, c) is not None}
