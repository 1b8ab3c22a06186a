"""Migration 0004 on a database holding data of 0003: the system limit becomes the
installation's, other overrides and back-offs stay the default client's, events learn their
client from the database, and nothing is lost either way."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app.extensions import db
from tests.test_migration_clients import old_app  # noqa: F401  (the fixture)

ROWS_0003 = """
INSERT INTO accounts (client_id, name, provider, email, sending_domain, host, port, security,
                      daily_limit)
VALUES (1, 'a1', 'smtp', 'a1@send.example', 'send.example', 'smtp.example', 587, 'starttls', 100);
INSERT INTO campaigns (client_id, name, subject, body_text) VALUES (1, 'c1', 's', 'b');
INSERT INTO limits (client_id, scope, key, per_day) VALUES (1, 'system', '*', 500),
                                                           (1, 'recipient_domain', 'to.example', 5),
                                                           (1, 'account', '1', 50);
INSERT INTO domain_backoffs (domain, until, reason) VALUES ('slow.example', now(), '421');
INSERT INTO events (type, campaign_id) SELECT 'campaign_started', id FROM campaigns;
"""


def _load(sql: str) -> None:
    with db.engine.begin() as conn:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(text(statement))


def _rows(sql: str) -> list[tuple]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_upgrade_keeps_the_limits_and_back_offs_and_makes_system_global(old_app):  # noqa: F811
    upgrade(revision="0003")
    _load(ROWS_0003)
    upgrade()
    assert _rows("SELECT scope, key, client_id, per_day FROM limits ORDER BY id") == [
        ("system", "*", None, 500),
        ("recipient_domain", "to.example", 1, 5),
        ("account", "1", 1, 50),
    ]
    assert _rows("SELECT client_id, domain FROM domain_backoffs") == [(1, "slow.example")]
    assert _rows("SELECT client_id FROM events") == [(1,)]


def test_keys_made_before_clients_existed_stay_admin_keys_new_ones_do_not(old_app):  # noqa: F811
    _load("INSERT INTO api_keys (name, key_hash, prefix) VALUES ('old', repeat('a', 64), 'sf_a')")
    upgrade(revision="0003")
    _load("INSERT INTO api_keys (name, key_hash, prefix, client_id) VALUES"
          " ('new', repeat('b', 64), 'sf_b', 1)")  # fmt: skip
    upgrade()
    assert _rows("SELECT name, is_admin FROM api_keys ORDER BY id") == [
        ("old", True),
        ("new", False),
    ]


def test_the_database_fills_an_events_client_from_its_campaign_or_account(old_app):  # noqa: F811
    upgrade()
    _load(
        "INSERT INTO clients (name) VALUES ('Other');"
        "INSERT INTO accounts (client_id, name, provider, email, sending_domain, host, port,"
        " security, daily_limit) VALUES (2, 'b1', 'smtp', 'b@b.example', 'b.example', 'h', 587,"
        " 'starttls', 1);"
        "INSERT INTO campaigns (client_id, name, subject, body_text) VALUES (2, 'c', 's', 'b');"
        "INSERT INTO events (type, campaign_id) VALUES ('campaign_started', 1);"
        "INSERT INTO events (type, account_id) VALUES ('account_paused', 1);"
        "INSERT INTO events (type, client_id, account_id) VALUES ('account_paused', 1, 1);"
        "INSERT INTO events (type, data) VALUES ('imported', '{}')"
    )
    assert _rows("SELECT type, client_id FROM events ORDER BY id") == [
        ("campaign_started", 2),
        ("account_paused", 2),
        # A writer that names the client is believed.
        ("account_paused", 1),
        ("imported", None),
    ]


def test_limits_are_unique_per_client_and_the_system_row_has_none(old_app):  # noqa: F811
    upgrade()
    _load(
        "INSERT INTO clients (name) VALUES ('Other');"
        "INSERT INTO limits (client_id, scope, key, per_day) VALUES"
        " (1, 'recipient_domain', 'to.example', 5), (2, 'recipient_domain', 'to.example', 9),"
        " (NULL, 'system', '*', 100), (2, 'client', '2', 1000)"
    )
    with db.engine.begin() as conn:
        again = conn.execute(
            text(
                "INSERT INTO limits (client_id, scope, key, per_day)"
                " VALUES (NULL, 'system', '*', 1)"
                " ON CONFLICT ON CONSTRAINT uq_limits_scope_key_client DO NOTHING RETURNING id"
            )
        ).first()
    assert again is None
    for bad in ("(1, 'system', '*', 1)", "(NULL, 'account', '1', 1)"):
        try:
            _load(f"INSERT INTO limits (client_id, scope, key, per_day) VALUES {bad}")
        except Exception as exc:  # the check constraint's IntegrityError
            assert "ck_limits_client_scoped" in str(exc) or "uq_limits" in str(exc), exc
        else:
            raise AssertionError(f"accepted {bad}")


def test_downgrade_to_0003_keeps_the_rows(old_app):  # noqa: F811
    upgrade(revision="0003")
    _load(ROWS_0003)
    upgrade()
    downgrade(revision="0003")
    assert _rows("SELECT scope, key, client_id FROM limits ORDER BY id") == [
        ("system", "*", 1),
        ("recipient_domain", "to.example", 1),
        ("account", "1", 1),
    ]
    assert _rows("SELECT domain FROM domain_backoffs") == [("slow.example",)]
