"""`flask --app app clients ...`, `keys create --admin/--client` and `users create
--client/--role`."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from app.models import ApiKey, Client, User, UserClient
from tests.test_cli import flask_cli


def _key_row(session, key):
    digest = hashlib.sha256(key.encode()).hexdigest()
    return session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one()


def test_clients_create_prints_the_id_last_and_list_shows_it(app, runner, session):
    created = runner.invoke(args=["clients", "create", "  Acme  "])
    assert created.exit_code == 0, created.output
    client_id = int(created.stdout.strip().splitlines()[-1])
    assert session.get(Client, client_id).name == "Acme"
    listed = runner.invoke(args=["clients", "list"])
    assert listed.exit_code == 0
    lines = listed.output.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["1", "default", "active"]
    assert lines[1].split("\t")[:3] == [str(client_id), "Acme", "active"]
    assert lines[1].split("\t")[3:] == ["daily cap -", "per minute -"]


def test_clients_list_shows_a_clients_caps_from_its_limits(app, runner, factory, session):
    from app.models import LimitOverride

    other = factory.create_client(name="Capped")
    session.add(LimitOverride(client_id=other.id, scope="client", key=str(other.id), per_day=300))
    session.commit()
    lines = runner.invoke(args=["clients", "list"]).output.strip().splitlines()
    assert lines[1].split("\t") == [str(other.id), "Capped", "active", "daily cap 300",
                                    "per minute -"]  # fmt: skip


def test_clients_create_refuses_a_taken_or_blank_name(app, runner, session):
    assert runner.invoke(args=["clients", "create", "Acme"]).exit_code == 0
    taken = runner.invoke(args=["clients", "create", "Acme"])
    assert taken.exit_code != 0 and "a client named 'Acme' exists" in taken.output
    blank = runner.invoke(args=["clients", "create", " "])
    assert blank.exit_code != 0 and "name" in blank.output
    assert session.execute(select(Client.name).order_by(Client.id)).scalars().all() == [
        "default",
        "Acme",
    ]


def test_keys_create_admin_and_for_a_client(app, settings_env, session):
    acme = flask_cli(settings_env, "clients", "create", "Acme")
    acme_id = int(acme.stdout.strip().splitlines()[-1])
    admin = flask_cli(settings_env, "keys", "create", "root", "--admin")
    scoped = flask_cli(settings_env, "keys", "create", "crm", "--client", str(acme_id))
    plain = flask_cli(settings_env, "keys", "create", "ops")
    for result in (admin, scoped, plain):
        assert result.returncode == 0, result.stderr
    rows = [_key_row(session, r.stdout.strip().splitlines()[-1]) for r in (admin, scoped, plain)]
    assert [(r.name, r.client_id, r.is_admin) for r in rows] == [
        ("root", 1, True),
        ("crm", acme_id, False),
        ("ops", 1, False),
    ]


def test_keys_create_for_an_unknown_client_is_refused(app, runner, session):
    result = runner.invoke(args=["keys", "create", "crm", "--client", "42"])
    assert result.exit_code != 0
    assert "--client" in result.output and "no client 42" in result.output
    assert session.execute(select(ApiKey)).first() is None


def test_keys_list_shows_the_client_and_admin_keys(app, runner):
    runner.invoke(args=["keys", "create", "root", "--admin"])
    listed = runner.invoke(args=["keys", "list"]).output.strip().splitlines()
    assert "client 1" in listed[0] and listed[0].endswith("admin")


def _memberships(session, email):
    user = session.execute(select(User).where(User.email == email)).scalar_one()
    rows = session.execute(select(UserClient).where(UserClient.user_id == user.id)).scalars()
    return [(m.client_id, m.role) for m in rows]


def test_users_create_joins_the_default_client_as_member(app, runner, session):
    result = runner.invoke(args=["users", "create", "ops@example.com", "--password", "x" * 12])
    assert result.exit_code == 0, result.output
    assert _memberships(session, "ops@example.com") == [(1, "member")]


def test_users_create_for_a_client_as_admin(app, runner, session, factory):
    acme = factory.create_client(name="Acme")
    args = ["users", "create", "boss@example.com", "--password", "x" * 12]
    result = runner.invoke(args=[*args, "--client", str(acme.id), "--role", "admin"])
    assert result.exit_code == 0, result.output
    assert _memberships(session, "boss@example.com") == [(acme.id, "admin")]


def test_users_create_for_an_unknown_client_creates_nobody(app, runner, session):
    args = ["users", "create", "x@example.com", "--password", "x" * 12, "--client", "42"]
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and "no client 42" in result.output
    assert session.execute(select(User)).first() is None
