"""Campaign completion (worker.jobs.dispatch_sql.COMPLETE_CAMPAIGNS): a running campaign
completes when none of its recipients can still be sent (pending, deferred, queued,
sending), never while an import holds it, and the decision reads recipient_counts and the
index entries of those statuses, never the campaign's rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import Campaign
from tests.pipeline import dispatch
from worker.jobs.dispatch_sql import COMPLETE_CAMPAIGNS

OPEN_STATUSES = ["pending", "deferred", "queued", "sending"]
CLOSED_STATUSES = ["sent", "bounced", "failed", "suppressed", "unsubscribed", "unknown"]
# The statement before recipient_counts answered: no index holds all four statuses, so it
# walked the campaign's rows through uq_recipients_campaign_email.
SCANNING_STATEMENT = text(
    """
    UPDATE campaigns AS c SET status = 'completed', completed_at = :now, updated_at = :now
    WHERE c.id = ANY(:ids) AND c.status = 'running' AND NOT EXISTS (
        SELECT 1 FROM recipients r WHERE r.campaign_id = c.id
          AND r.status IN ('pending', 'deferred', 'queued', 'sending'))
    RETURNING c.id
    """
)
# Only these hold no sent row: what the decision may read of recipients.
STATUS_INDEXES = {"ix_recipients_due", "ix_recipients_campaign_status"}
RECIPIENT_SCAN = re.compile(r"(\w+(?: \w+)* Scan)(?: using (\w+))? on recipients\b")


def _sent_campaign(n: int) -> Campaign:
    """A running campaign of `n` sent rows, inserted in one statement (the triggers count
    them as any import's rows)."""
    campaign = Campaign(name="big", subject="Hi", body_text="Hello", status="running")
    db.session.add(campaign)
    db.session.commit()
    db.session.execute(
        text(
            "INSERT INTO recipients (campaign_id, email, domain, status, sent_at) "
            "SELECT :id, 's' || g || '@d' || (g % 50) || '.example', "
            "'d' || (g % 50) || '.example', 'sent', now() FROM generate_series(1, :n) g"
        ),
        {"id": campaign.id, "n": n},
    )
    db.session.commit()
    return campaign


def _add_one(campaign: Campaign, status: str, email: str = "left@x.example") -> None:
    db.session.execute(
        text(
            "INSERT INTO recipients (campaign_id, email, domain, status, next_attempt_at) "
            "VALUES (:id, :email, 'x.example', :status, :at)"
        ),
        {
            "id": campaign.id,
            "email": email,
            "status": status,
            # A row the dispatcher would not claim in this pass, so it keeps its status.
            "at": datetime.now(UTC) + timedelta(hours=1),
        },
    )
    db.session.commit()


def _status(campaign_id: int) -> str:
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id).status


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_one_recipient_that_can_still_be_sent_keeps_the_campaign_running(app, factory, status):
    campaign = _sent_campaign(500)
    _add_one(campaign, status)
    assert dispatch(app).completed_campaigns == []
    assert _status(campaign.id) == "running"
    db.session.execute(
        text("UPDATE recipients SET status = 'sent' WHERE campaign_id = :id AND status = :s"),
        {"id": campaign.id, "s": status},
    )
    db.session.commit()
    assert dispatch(app).completed_campaigns == [campaign.id]
    assert _status(campaign.id) == "completed"


@pytest.mark.parametrize("status", CLOSED_STATUSES)
def test_a_recipient_nothing_more_will_happen_to_does_not_keep_it_running(app, factory, status):
    campaign = _sent_campaign(500)
    _add_one(campaign, status)
    assert dispatch(app).completed_campaigns == [campaign.id]
    assert _status(campaign.id) == "completed"


def test_every_campaign_is_decided_on_its_own(app, factory):
    done, busy = _sent_campaign(200), _sent_campaign(200)
    _add_one(busy, "sending")
    assert dispatch(app).completed_campaigns == [done.id]
    assert (_status(done.id), _status(busy.id)) == ("completed", "running")


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_campaign_an_import_holds_is_skipped_not_completed(app, factory, database_url, outcome):
    """The importer holds the campaign row (FOR NO KEY UPDATE) with its pending rows not yet
    committed: the pass skips the campaign at once (SKIP LOCKED), and decides on a later pass
    from what the import left."""
    campaign = _sent_campaign(500)
    importer = psycopg2.connect(database_url)
    try:
        with importer.cursor() as cur:
            cur.execute("SELECT id FROM campaigns WHERE id = %s FOR NO KEY UPDATE", (campaign.id,))
            cur.execute(
                "INSERT INTO recipients (campaign_id, email, domain, next_attempt_at) "
                "SELECT %s, 'new' || g || '@x.example', 'x.example', now() + interval '1 hour' "
                "FROM generate_series(1, 3) g",
                (campaign.id,),
            )
        assert dispatch(app).completed_campaigns == []
        assert _status(campaign.id) == "running"
        getattr(importer, outcome)()
    finally:
        importer.close()
    if outcome == "commit":
        assert dispatch(app).completed_campaigns == []
        assert _status(campaign.id) == "running"
    else:
        assert dispatch(app).completed_campaigns == [campaign.id]
        assert _status(campaign.id) == "completed"


def test_counts_that_missed_a_recipient_never_close_its_campaign(app, factory):
    """A pending row added behind the triggers' back (a restore with triggers disabled):
    recipient_counts says nothing is left, the recipients say otherwise, and they win."""
    campaign = _sent_campaign(100)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(
            "INSERT INTO recipients (campaign_id, email, domain, next_attempt_at) "
            f"VALUES ({campaign.id}, 'missed@x.example', 'x.example', now() + interval '1 hour')"
        )
    counted = db.session.execute(
        text("SELECT coalesce(sum(n), 0) FROM recipient_counts WHERE status = 'pending'")
    ).scalar_one()
    assert counted == 0
    assert dispatch(app).completed_campaigns == []
    assert _status(campaign.id) == "running"


def _plan(statement, campaign_id: int, statistics: str = "analyzed") -> str:
    """EXPLAIN ANALYZE inside a transaction rolled back after it: the plan as run."""
    if statistics != "analyzed":
        _forget_statistics()
    sql = re.sub(r"(?<![:\w]):(\w+)(?!:)", r"%(\1)s", statement.text)
    cursor = db.session.connection().connection.driver_connection.cursor()
    cursor.execute(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql,
        {"ids": [campaign_id], "now": datetime.now(UTC)},
    )
    plan = "\n".join(row[0] for row in cursor.fetchall())
    db.session.rollback()
    return plan


def _recipient_scans(plan: str) -> list[tuple[str, str]]:
    """Each scan of recipients in `plan`: its index (or '') and its node's lines."""
    lines = plan.splitlines()
    scans = []
    for i, line in enumerate(lines):
        found = RECIPIENT_SCAN.search(line)
        if not found:
            continue
        depth = len(line) - len(line.lstrip(" -"))
        body = [line]
        for after in lines[i + 1 :]:
            if "->" in after or len(after) - len(after.lstrip(" ")) < depth:
                break
            body.append(after)
        scans.append((found.group(2) or "", "\n".join(body)))
    return scans


def _reads_campaign_rows(plan: str) -> bool:
    """True unless every scan of recipients is one campaign's entries of a status index."""
    scans = _recipient_scans(plan)
    return not scans or any(
        index not in STATUS_INDEXES
        or "campaign_id = c.id" not in node
        or "Rows Removed by Filter" in node
        for index, node in scans
    )


def _forget_statistics() -> None:
    """As a table never analyzed (a new install, before autovacuum's first pass): inside the
    test's transaction, rolled back after it."""
    db.session.execute(text("DELETE FROM pg_statistic WHERE starelid = 'recipients'::regclass"))
    db.session.execute(
        text("UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'recipients'::regclass")
    )


@pytest.mark.parametrize("statistics", ["analyzed", "never analyzed"])
def test_the_decision_reads_no_row_of_a_finished_campaign(app, factory, statistics):
    """20,000 sent rows and nothing left: the counts say so, and the confirmation reads
    this campaign's entries of the status indexes (none), not its rows; nor the due rows
    of another campaign still sending."""
    campaign = _sent_campaign(20_000)
    other = factory.create_campaign(status="running")
    db.session.execute(
        text(
            "INSERT INTO recipients (campaign_id, email, domain) "
            "SELECT :id, 'p' || g || '@x.example', 'x.example' FROM generate_series(1, 5000) g"
        ),
        {"id": other.id},
    )
    db.session.commit()
    db.session.execute(text("ANALYZE recipients"))
    db.session.commit()
    # The assertion tells the scan apart: the old statement fails it.
    assert _reads_campaign_rows(_plan(SCANNING_STATEMENT, campaign.id, statistics))
    plan = _plan(COMPLETE_CAMPAIGNS, campaign.id, statistics)
    assert "pk_recipient_counts" in plan, plan
    assert not _reads_campaign_rows(plan), plan
    assert {index for index, _ in _recipient_scans(plan)} == STATUS_INDEXES, plan
    assert "Seq Scan on recipients" not in plan and "hashed" not in plan, plan


def test_counts_that_show_work_left_answer_without_reading_recipients(app, factory):
    campaign = _sent_campaign(20_000)
    _add_one(campaign, "pending")
    db.session.execute(text("ANALYZE recipients"))
    db.session.commit()
    plan = _plan(COMPLETE_CAMPAIGNS, campaign.id)
    assert "pk_recipient_counts" in plan, plan
    for line in plan.splitlines():
        if RECIPIENT_SCAN.search(line):
            assert "never executed" in line, plan
