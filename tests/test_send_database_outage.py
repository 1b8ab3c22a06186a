"""A database outage in the middle of a batch: the SMTP reply the worker already holds is
written once PostgreSQL answers again (never lost as `unknown`), nothing more is sent
while it is away, and the batch's other rows go back to `pending` at once."""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg2
from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from tests.conftest import PG_ADMIN_DSN
from tests.pipeline import dispatch, run_until_idle, send_batches, smtp_account

KILL_OTHERS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid()
"""


class Outage:
    """Cuts every connection to the test database and refuses new ones (ALLOW_CONNECTIONS
    false binds superusers too) for `seconds`: to the worker, PostgreSQL is gone."""

    def __init__(self, database: str, seconds: float) -> None:
        self.database = database
        self.seconds = seconds
        self.started = threading.Event()
        self.ended = threading.Event()

    def __call__(self, recipient: str, attempt: int) -> None:
        if recipient.startswith("cut@") and not self.started.is_set():
            self.started.set()
            threading.Thread(target=self._run, daemon=True).start()
            time.sleep(0.3)  # the cut lands while this message is in flight

    def _run(self) -> None:
        conn = psycopg2.connect(PG_ADMIN_DSN)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS false')
                cur.execute(KILL_OTHERS, (self.database,))
                time.sleep(self.seconds)
                cur.execute(f'ALTER DATABASE "{self.database}" ALLOW_CONNECTIONS true')
        finally:
            conn.close()
            self.ended.set()

    def wait(self) -> None:
        assert self.ended.wait(30), "the outage never ended"


def _statuses():
    db.session.rollback()
    return Counter(db.session.execute(select(Recipient.email, Recipient.status)).all())


def test_an_outcome_held_during_an_outage_is_written_when_the_database_is_back(
    app, factory, smtp_server, database_url, one_claim_at_a_time
):
    outage = Outage(database_url.rsplit("/", 1)[1], seconds=2.0)
    smtp_server.script(outage)
    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    emails = ["first@to.example", "cut@to.example", "after1@to.example", "after2@to.example"]
    factory.create_running_campaign(emails)
    result = dispatch(app)
    assert result.queued == 4
    started = time.monotonic()
    [outcome] = send_batches(app, result)
    waited = time.monotonic() - started
    outage.wait()
    assert outcome.handed_back == 2
    statuses = dict(_statuses())
    # The server accepted "cut@"; the worker kept the reply through the outage.
    assert statuses[("cut@to.example", "sent")] == 1
    assert statuses[("first@to.example", "sent")] == 1
    assert statuses[("after1@to.example", "pending")] == 1
    assert statuses[("after2@to.example", "pending")] == 1
    # Nothing was sent while the database was away.
    assert sorted(r for m in smtp_server.received for r in m.recipients) == [
        "cut@to.example",
        "first@to.example",
    ]
    assert waited >= 1.5  # it did wait for the database, not give up


def test_the_rest_goes_out_on_the_next_pass(app, factory, smtp_server, database_url):
    outage = Outage(database_url.rsplit("/", 1)[1], seconds=1.0)
    smtp_server.script(outage)
    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    factory.create_running_campaign(["cut@to.example", "b@to.example", "c@to.example"])
    send_batches(app, dispatch(app))
    outage.wait()
    send_batches(app, dispatch(app))
    assert set(_statuses()) == {
        ("cut@to.example", "sent"),
        ("b@to.example", "sent"),
        ("c@to.example", "sent"),
    }
    received = Counter(r for m in smtp_server.received for r in m.recipients)
    assert received == {"cut@to.example": 1, "b@to.example": 1, "c@to.example": 1}


def test_a_send_task_that_cannot_reach_the_database_is_retried_not_dropped(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from worker import tasks
    from worker.jobs import send

    calls = []

    def unreachable_twice(account_id, recipient_ids):
        calls.append((account_id, recipient_ids))
        if len(calls) <= 2:
            raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
        return send.BatchResult()

    monkeypatch.setattr(send, "send_batch", unreachable_twice)
    with app.app_context():
        outcome = tasks.send_batch.apply(args=[7, [1, 2]])
    assert outcome.successful(), outcome.traceback
    assert calls == [(7, [1, 2])] * 3


class LostCommitAnswer:
    """The commit after the batch's second claim is made by the server, then fails on the
    worker's side as when the connection is cut between the two (PostgreSQL's fast
    shutdown ends a session that has just committed): the claimed rows are `sending` in
    the database while the worker believes the claim failed."""

    def __init__(self, monkeypatch, error: Exception) -> None:
        from sqlalchemy.orm import Session

        from worker.jobs.sender import Sender

        self.claims = 0
        self.cut = False
        real_claim, real_commit = Sender.claim_group, Session.commit

        def claim_group(sender, ids, *, finished=()):
            claimed = real_claim(sender, ids, finished=finished)
            self.claims += 1
            return claimed

        def commit(session):
            real_commit(session)
            if self.claims == 2 and not self.cut:
                self.cut = True
                raise error

        monkeypatch.setattr(Sender, "claim_group", claim_group)
        monkeypatch.setattr(Session, "commit", commit)


def _rows():
    db.session.rollback()
    return {
        r.email: (r.status, r.attempts, r.claimed_by)
        for r in db.session.execute(select(Recipient)).scalars()
    }


SEVEN = [f"r{i}@to.example" for i in range(7)]


def test_a_claim_committed_as_the_connection_dropped_goes_back_unsent_not_unknown(
    app, factory, smtp_server, groups_of_3, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    factory.create_running_campaign(SEVEN)
    lost = LostCommitAnswer(
        monkeypatch, OperationalError("COMMIT", {}, Exception("server closed the connection"))
    )
    [outcome] = send_batches(app, dispatch(app))
    assert lost.cut
    rows = _rows()
    # The first group went out; the second was claimed (durably) but never sent: back to
    # pending with its attempt undone, like the rest of the batch. Before, those three stayed
    # `sending` under a live worker for ever, then `unknown` once it stopped: lost.
    assert [rows[e][0] for e in SEVEN] == ["sent"] * 3 + ["pending"] * 4, rows
    assert all(rows[e][1:] == (0, None) for e in SEVEN[3:]), rows
    assert outcome.handed_back == 4
    assert sorted(r for m in smtp_server.received for r in m.recipients) == SEVEN[:3]

    monkeypatch.undo()
    run_until_idle(app)
    assert {e: rows[0] for e, rows in _rows().items()} == dict.fromkeys(SEVEN, "sent")
    received = Counter(r for m in smtp_server.received for r in m.recipients)
    assert received == dict.fromkeys(SEVEN, 1)


def test_an_error_of_ours_after_a_claim_leaves_its_unsent_rows_queued_for_recovery(
    app, factory, smtp_server, groups_of_3, monkeypatch
):
    import pytest

    factory.create_account(**smtp_account(smtp_server), per_minute_limit=1000)
    factory.create_running_campaign(SEVEN)
    LostCommitAnswer(monkeypatch, RuntimeError("a bug of ours right after the claim"))
    with pytest.raises(RuntimeError):
        send_batches(app, dispatch(app))
    monkeypatch.undo()
    rows = _rows()
    assert [rows[e][0] for e in SEVEN] == ["sent"] * 3 + ["queued"] * 4, rows
    # Released to recovery as queued rows (which go back to pending), not as `sending` ones
    # (which recovery must call `unknown`).
    assert all(rows[e][1:] == (0, None) for e in SEVEN[3:]), rows
    assert sorted(r for m in smtp_server.received for r in m.recipients) == SEVEN[:3]


def test_giving_back_a_batchs_unsent_rows_leaves_a_later_claim_of_one_alone(app, factory):
    """By the Message-ID of this batch's own claim: a row this batch gave back and another
    batch of the same process then claimed (a duplicate task, on a threaded pool) is not
    undone under that batch's feet."""
    from sqlalchemy import text

    from worker.jobs.sender import Sender

    account = factory.create_account()
    campaign = factory.create_campaign(status="running")
    ids = [
        r.id
        for r in factory.create_recipients(
            campaign,
            ["a@to.example", "b@to.example", "c@to.example"],
            status="queued",
            account_id=account.id,
        )
    ]
    sender = Sender.load(db.session, app.extensions["settings"], account.id)
    assert len(sender.claim_group(ids)) == 3
    db.session.commit()
    sender.attempted.add(ids[0])  # handed to the server
    db.session.execute(
        text("UPDATE recipients SET message_id = '<later@to.example>' WHERE id = :id"),
        {"id": ids[2]},
    )
    assert sender.unclaim_unattempted() == 2
    db.session.commit()
    rows = _rows()
    assert rows["a@to.example"][:2] == ("sending", 1)
    assert rows["b@to.example"][:2] == ("queued", 0)
    assert rows["c@to.example"][:2] == ("sending", 1)
