"""The send path's per-group statements: the claim reaches recipients only by primary key,
whatever the table's statistics say, and runs as a server-side prepared statement that
behaves like any other statement of the session (its transaction, its errors, a lost
connection replaced)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session

from app.extensions import db
from worker.jobs.prepared import Prepared
from worker.jobs.send_sql import CLAIM_GROUP, FINISH_SENT_GROUP

OTHER_RECIPIENT_INDEXES = re.compile(r"ix_recipients_\w+|uq_recipients_\w+")


def _queued_rows(factory, n: int) -> tuple[int, list[int]]:
    account = factory.create_account()
    campaign = factory.create_campaign(status="running")
    rows = factory.create_recipients(
        campaign, [f"q{i}@example.org" for i in range(n)], status="queued", account_id=account.id
    )
    return account.id, [r.id for r in rows]


def _plan(statement, values) -> str:
    sql = re.sub(r"(?<![:\w]):(\w+)(?!:)", r"%(\1)s", statement.text)
    cursor = db.session.connection().connection.driver_connection.cursor()
    cursor.execute("EXPLAIN (COSTS OFF) " + sql, values)
    return "\n".join(row[0] for row in cursor.fetchall())


def _forget_statistics() -> None:
    """As a table never analyzed (a new install, before autovacuum's first pass): inside the
    test's transaction, rolled back after it."""
    db.session.execute(
        text("DELETE FROM pg_statistic WHERE starelid = 'recipients'::regclass")
    )
    db.session.execute(
        text(
            "UPDATE pg_class SET reltuples = -1, relpages = 0 "
            "WHERE oid = 'recipients'::regclass"
        )
    )


@pytest.mark.parametrize("statistics", ["never analyzed", "analyzed"])
def test_the_group_claim_reaches_recipients_only_by_primary_key(factory, statistics):
    account_id, ids = _queued_rows(factory, 3000)
    if statistics == "analyzed":
        db.session.execute(text("ANALYZE recipients"))
    else:
        _forget_statistics()
    group = ids[1500:1505]
    values = {
        "ids": group,
        "message_ids": [f"<m{i}@example.org>" for i in group],
        "account_id": account_id,
        "now": datetime.now(UTC),
        "holder": "test",
    }
    plan = _plan(CLAIM_GROUP, values)
    db.session.rollback()
    assert "pk_recipients" in plan, plan
    # An index on status or campaign would walk every queued row of the campaign.
    assert not OTHER_RECIPIENT_INDEXES.findall(plan), plan
    assert "Seq Scan on recipients" not in plan, plan


def test_a_statement_is_prepared_once_per_connection_and_outlives_a_rollback(factory):
    account_id, ids = _queued_rows(factory, 4)
    claim = Prepared.of("test_claim_group", CLAIM_GROUP)
    assert claim.params == ("now", "holder", "message_ids", "ids", "account_id")
    values = {
        "ids": ids[:2],
        "message_ids": ["<a@example.org>", "<b@example.org>"],
        "account_id": account_id,
        "now": datetime.now(UTC),
        "holder": "test",
    }
    # One connection throughout, as a send batch holds it (worker.jobs.send).
    with db.engine.connect() as connection, Session(bind=connection) as session:
        rows = claim.execute(session, values)
        assert sorted(r.id for r in rows) == ids[:2]
        assert {r.message_id for r in rows} == {"<a@example.org>", "<b@example.org>"}
        assert [r.suppressed for r in rows] == [False, False]
        session.rollback()  # the claims are gone; the prepared statement stays
        prepared = session.execute(
            text("SELECT name FROM pg_prepared_statements WHERE name = 'test_claim_group'")
        ).scalars()
        assert list(prepared) == ["test_claim_group"]
        rows = claim.execute(session, {**values, "ids": ids[1:4], "message_ids": ["1", "2", "3"]})
        assert sorted(r.id for r in rows) == ids[1:4]
        session.commit()
    statuses = db.session.execute(
        text("SELECT id, status, message_id FROM recipients ORDER BY id")
    ).all()
    assert [(s.status, s.message_id) for s in statuses] == [
        ("queued", None), ("sending", "1"), ("sending", "2"), ("sending", "3")
    ]  # fmt: skip


def test_errors_are_sqlalchemy_errors_and_a_lost_connection_is_replaced(factory):
    _, ids = _queued_rows(factory, 1)
    finish = Prepared.of("test_finish_sent_group", FINISH_SENT_GROUP)
    db.session.execute(text("UPDATE recipients SET status = 'sending'"))
    values = {
        "done_ids": ids,
        "codes": [250],
        "replies": ["ok"],
        "data": ["{not json"],  # the event's data is cast to jsonb: refused
        "client_ids": [1],
        "now": datetime.now(UTC),
    }
    with pytest.raises(DataError):
        finish.execute(db.session, values)
    db.session.rollback()
    values["data"] = [json.dumps({"smtp_code": 250})]

    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other = psycopg2.connect(db.engine.url.render_as_string(hide_password=False))
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    other.close()
    with pytest.raises(OperationalError):
        finish.execute(db.session, values)
    db.session.rollback()
    # A new connection: prepared again there, and the statement does its work.
    db.session.execute(text("UPDATE recipients SET status = 'sending'"))
    assert finish.execute(db.session, values) == []
    db.session.commit()
    assert db.session.execute(text("SELECT status FROM recipients")).scalar_one() == "sent"
    assert db.session.execute(
        text("SELECT client_id FROM events WHERE type = 'sent'")
    ).scalar_one() == 1
