"""Migration 0003 on a database holding data of the previous schema (0002): every row
survives and belongs to the default client, or stays global as DESIGN says. (0004, which
moves limits and back-offs on, is tests/test_migration_client_scoping.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app import create_app
from app.extensions import db
from app.settings import Settings
from tests.conftest import PG_ADMIN_DSN, _admin_exec

ROWS_0002 = """
INSERT INTO accounts (name, provider, email, sending_domain, host, port, security, daily_limit)
VALUES ('a1', 'smtp', 'a1@send.example', 'send.example', 'smtp.example', 587, 'starttls', 100),
       ('a2', 'smtp', 'a2@send.example', 'send.example', 'smtp.example', 587, 'starttls', 100);
INSERT INTO campaigns (name, subject, body_text) VALUES ('c1', 's', 'b');
INSERT INTO recipients (campaign_id, email, domain)
SELECT id, 'r@to.example', 'to.example' FROM campaigns;
INSERT INTO suppressions (kind, value, reason, source)
VALUES ('email', 'gone@to.example', 'unsubscribed', 'link'),
       ('email', 'bad@to.example', 'bounced', 'smtp'),
       ('domain', 'blocked.example', 'manual', 'api');
INSERT INTO api_keys (name, key_hash, prefix) VALUES ('k', repeat('a', 64), 'sf_aaaaaaa');
INSERT INTO limits (scope, key, per_day) VALUES ('system', '*', 500),
                                                ('recipient_domain', 'to.example', 5);
INSERT INTO users (email, password_hash) VALUES ('ops@example.com', 'x');
INSERT INTO events (type, campaign_id) SELECT 'campaign_started', id FROM campaigns;
INSERT INTO events (type, data) VALUES ('imported', '{"n": 1}');
"""

TABLES = ("accounts", "campaigns", "recipients", "suppressions", "api_keys", "limits",
          "users", "events")  # fmt: skip


@pytest.fixture
def old_app(settings_env: dict[str, str]) -> Iterator[Any]:
    """An app on its own database, migrated to 0002 only, with DEFAULT_CLIENT_NAME set."""
    name = f"sendfleet_migration_{uuid.uuid4().hex[:8]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    env = {k.lower(): v for k, v in settings_env.items()}
    env["database_url"] = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    env["default_client_name"] = "Acme"
    application = create_app(Settings(**env))
    try:
        with application.app_context():
            upgrade(revision="0002")
            yield application
            db.session.remove()
            db.engine.dispose()
    finally:
        _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


def _counts(conn: Any) -> dict[str, int]:
    return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(text(sql))]


def test_upgrade_keeps_every_row_and_gives_it_to_the_default_client(old_app):
    with db.engine.begin() as conn:
        for statement in ROWS_0002.split(";"):
            if statement.strip():
                conn.execute(text(statement))
        before = _counts(conn)
    assert all(before.values()), before

    upgrade(revision="0003")

    with db.engine.connect() as conn:
        assert _counts(conn) == before
        assert _rows(conn, "SELECT id, name, status FROM clients") == [(1, "Acme", "active")]
        for table in ("accounts", "campaigns", "limits", "api_keys", "events"):
            owners = _rows(conn, f"SELECT DISTINCT client_id FROM {table}")
            assert owners == [(1,)], table
        assert _rows(conn, "SELECT value, client_id FROM suppressions ORDER BY value") == [
            ("bad@to.example", None),
            ("blocked.example", None),
            ("gone@to.example", 1),
        ]
        assert _rows(conn, "SELECT is_admin FROM api_keys") == [(False,)]
        assert _rows(conn, "SELECT client_id, role FROM user_clients") == [(1, "member")]
        # The recipients are untouched: they belong to a client through their campaign.
        assert _rows(conn, "SELECT email FROM recipients") == [("r@to.example",)]


def test_after_upgrade_names_are_unique_per_client_and_unsubscribes_per_client(old_app):
    upgrade(revision="0003")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO clients (name) VALUES ('Other')"))
        for client_id in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO accounts (client_id, name, provider, email, sending_domain,"
                    " host, port, security, daily_limit) VALUES (:c, 'same', 'smtp',"
                    " 'x@s.example', 's.example', 'h', 587, 'starttls', 1)"
                ),
                {"c": client_id},
            )
        # One global row and one per client for the same address; a second global is refused.
        for client_id in (None, 1, 2):
            conn.execute(
                text(
                    "INSERT INTO suppressions (client_id, kind, value, reason)"
                    " VALUES (:c, 'email', 'p@to.example', 'unsubscribed')"
                ),
                {"c": client_id},
            )
        duplicate = conn.execute(
            text(
                "INSERT INTO suppressions (kind, value, reason)"
                " VALUES ('email', 'p@to.example', 'bounced')"
                " ON CONFLICT (client_id, value) DO NOTHING RETURNING id"
            )
        ).first()
    assert duplicate is None


def test_client_id_is_required_on_owned_rows_and_optional_on_events_and_suppressions(old_app):
    upgrade(revision="0003")
    with db.engine.connect() as conn:
        nullable = _rows(
            conn,
            "SELECT table_name, is_nullable FROM information_schema.columns"
            " WHERE column_name = 'client_id' AND table_schema = 'public' ORDER BY table_name",
        )
    assert dict(nullable) == {
        "accounts": "NO",
        "api_keys": "NO",
        "campaigns": "NO",
        "events": "YES",
        "limits": "NO",
        "suppressions": "YES",
        "user_clients": "NO",
    }


def test_downgrade_to_0002_restores_the_flat_schema_and_keeps_the_rows(old_app):
    with db.engine.begin() as conn:
        for statement in ROWS_0002.split(";"):
            if statement.strip():
                conn.execute(text(statement))
        before = _counts(conn)
    upgrade()
    downgrade(revision="0002")
    with db.engine.begin() as conn:
        assert _counts(conn) == before
        assert conn.execute(text("SELECT to_regclass('clients')")).scalar_one() is None
        columns = _rows(
            conn,
            "SELECT table_name FROM information_schema.columns"
            " WHERE column_name = 'client_id' AND table_schema = 'public'",
        )
        assert columns == []
        # The old global uniqueness is back.
        refused = conn.execute(
            text(
                "INSERT INTO suppressions (kind, value, reason)"
                " VALUES ('email', 'bad@to.example', 'manual')"
                " ON CONFLICT (value) DO NOTHING RETURNING id"
            )
        ).first()
    assert refused is None


def test_the_models_match_the_migrated_schema(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.models import Base

    with app.app_context(), db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
