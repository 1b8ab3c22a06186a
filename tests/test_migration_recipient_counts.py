"""Migration 0013 on a database holding recipients of the previous schema: the backfill
counts them exactly, the triggers carry on from there, and the downgrade removes it all."""

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

ROWS_0012 = """
INSERT INTO campaigns (client_id, name, subject, body_text)
SELECT min(id), c, 's', 'b' FROM clients, (VALUES ('c1'), ('c2')) v(c) GROUP BY c ORDER BY c;
INSERT INTO recipients (campaign_id, email, domain, status)
SELECT 1 + g % 2, 'r' || g || '@x.example', 'x.example',
       (ARRAY['pending', 'sent', 'bounced', 'queued'])[1 + g % 4]
FROM generate_series(1, 101) g
"""
PLAIN = "SELECT campaign_id, status, count(*) FROM recipients GROUP BY 1, 2"
KEPT = "SELECT campaign_id, status, sum(n) FROM recipient_counts GROUP BY 1, 2 HAVING sum(n) <> 0"
OURS = (
    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'recipient_counts%' "
    "UNION ALL SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'recipient_counts%'"
)


@pytest.fixture
def old_app(settings_env: dict[str, str]) -> Iterator[Any]:
    """An app on its own database, migrated to 0012 only."""
    name = f"sendfleet_migration_{uuid.uuid4().hex[:8]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    env = {k.lower(): v for k, v in settings_env.items()}
    env["database_url"] = f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    application = create_app(Settings(**env))
    try:
        with application.app_context():
            upgrade(revision="0012")
            yield application
            db.session.remove()
            db.engine.dispose()
    finally:
        _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


def _rows(sql: str) -> dict[tuple[int, str], int]:
    with db.engine.connect() as conn:
        return {(c, s): int(n) for c, s, n in conn.execute(text(sql))}


def test_upgrade_backfills_the_counts_and_the_triggers_carry_on(old_app):
    with db.engine.begin() as conn:
        for statement in ROWS_0012.split(";"):
            conn.execute(text(statement))
    upgrade(revision="0013")
    plain = _rows(PLAIN)
    assert _rows(KEPT) == plain and sum(plain.values()) == 101
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE recipients SET status = 'sent' WHERE status = 'queued'"))
        conn.execute(text("DELETE FROM recipients WHERE id % 10 = 0"))
    assert _rows(KEPT) == _rows(PLAIN)


def test_downgrade_to_0012_removes_the_table_its_functions_and_triggers(old_app):
    upgrade(revision="0013")
    downgrade(revision="0012")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('recipient_counts')")).scalar() is None
        assert [n for (n,) in conn.execute(text(OURS))] == [0, 0]
    with db.engine.begin() as conn:  # recipients still take writes without the triggers
        for statement in ROWS_0012.split(";"):
            conn.execute(text(statement))
    upgrade(revision="0013")
    assert _rows(KEPT) == _rows(PLAIN)
