"""Migration 0016 on a database holding recipients: the declarative keys give way to the
triggers and come back on the downgrade, with every row kept."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from tests.test_migration_recipient_counts import ROWS_0012, old_app  # noqa: F401

KEYS = (
    "SELECT conname FROM pg_constraint WHERE conrelid = 'recipients'::regclass "
    "AND contype = 'f' ORDER BY conname"
)
TRIGGERS = (
    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE ANY "
    "(ARRAY['recipients_parents%', '%_recipients_cascade', '%_recipients_set_null']) "
    "ORDER BY tgname"
)
ORPHAN = (
    "INSERT INTO recipients (campaign_id, email, domain) VALUES (999, 'o@x.example', 'x.example')"
)


def _names(sql: str) -> list[str]:
    with db.engine.connect() as conn:
        return [name for (name,) in conn.execute(text(sql))]


def _refused(sql: str) -> str:
    with pytest.raises(IntegrityError) as error, db.engine.begin() as conn:
        conn.execute(text(sql))
    return str(error.value.orig.diag.constraint_name)  # type: ignore[union-attr]


def test_upgrade_swaps_the_keys_for_triggers_and_the_downgrade_swaps_back(old_app):  # noqa: F811
    upgrade(revision="0015")
    with db.engine.begin() as conn:
        for statement in ROWS_0012.split(";"):
            conn.execute(text(statement))
    upgrade(revision="0016")
    assert _names(KEYS) == []
    assert _names(TRIGGERS) == [
        "accounts_recipients_set_null", "campaigns_recipients_cascade",
        "recipients_parents_insert", "recipients_parents_update",
    ]  # fmt: skip
    assert _refused(ORPHAN) == "fk_recipients_campaign_id_campaigns"
    downgrade(revision="0015")
    assert _names(KEYS) == [
        "fk_recipients_account_id_accounts", "fk_recipients_campaign_id_campaigns",
    ]  # fmt: skip
    assert _names(TRIGGERS) == []
    assert _refused(ORPHAN) == "fk_recipients_campaign_id_campaigns"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM recipients")).scalar_one() == 101
    upgrade(revision="0016")
    assert _names(KEYS) == []
