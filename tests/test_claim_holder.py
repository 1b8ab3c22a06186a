"""A claim records the process that holds it: a send task marks its queued rows as held when
it starts, `queued -> sending` records the holder, and the holder's heartbeat beats in Redis
meanwhile. Rows a process gives up (hand-back, an exception) or a new dispatch are nobody's."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Campaign, Recipient
from tests.pipeline import dispatch, send_batches, smtp_account
from tests.test_recovery import _recover
from worker.jobs import sender
from worker.jobs.heartbeat import ensure_beating, heartbeat_key


def _rows() -> dict[str, Recipient]:
    db.session.rollback()
    db.session.expire_all()
    return {r.email: r for r in db.session.execute(select(Recipient)).scalars()}


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_started_batch_holds_its_queued_rows_and_its_claim_names_the_process(
    app, factory, smtp_server, settings, redis_client, one_claim_at_a_time
):
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    emails = ["a@example.org", "b@example.org", "c@example.org"]
    factory.create_recipients(campaign, emails)
    result = dispatch(app)
    assert len(result.batches) == 1
    smtp_server.delay_data_reply(1.5)  # the first message stalls inside its transaction
    worker = threading.Thread(target=send_batches, args=(app, result))
    worker.start()
    try:
        _wait(lambda: _rows()["a@example.org"].status == "sending", 10, "the first claim")
        rows = _rows()
        with app.app_context():
            me = ensure_beating(settings)
        assert [rows[e].status for e in emails] == ["sending", "queued", "queued"]
        assert {rows[e].claimed_by for e in emails} == {me}
        assert me.split(":")[1].isdigit() and len(me) <= 128
        # The test run flushes Redis per test; a live holder's key is back within one beat.
        _wait(
            lambda: redis_client.exists(heartbeat_key(me)),
            settings.heartbeat_interval_seconds + 1,
            "the heartbeat",
        )
    finally:
        worker.join(30)
    rows = _rows()
    assert [rows[e].status for e in emails] == ["sent"] * 3
    assert {rows[e].claimed_by for e in emails} == {me}  # who sent it, for the record


def test_a_batch_that_fails_after_a_send_gives_its_rows_up_to_the_age_rules(
    app, factory, smtp_server, settings, monkeypatch, one_claim_at_a_time
):
    """The process lives on, so its heartbeat would keep recovery away from rows it will
    never finish; without a holder, the lease and the queued rule apply again."""
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@example.org", "b@example.org"])
    result = dispatch(app)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug between the server's reply and the outcome")

    monkeypatch.setattr(sender, "classify_reply", broken)
    with pytest.raises(RuntimeError):
        send_batches(app, result)
    rows = _rows()
    # "a" was handed to the server: whether it arrived is not known here.
    assert (rows["a@example.org"].status, rows["a@example.org"].claimed_by) == ("sending", None)
    assert (rows["b@example.org"].status, rows["b@example.org"].claimed_by) == ("queued", None)
    assert [r for m in smtp_server.received for r in m.recipients] == ["a@example.org"]
    later = datetime.now(UTC) + timedelta(
        seconds=max(settings.send_lease_seconds, settings.queued_stale_seconds) + 5
    )
    recovered = _recover(app, now=later)
    assert recovered.unknown == {campaign.id: 1} and recovered.requeued == 1


def test_a_batch_that_fails_before_a_send_gives_the_claimed_row_back_unsent(
    app, factory, smtp_server, settings, monkeypatch, one_claim_at_a_time
):
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@example.org", "b@example.org"])
    result = dispatch(app)

    def broken(self, claimed, batch_result, **kwargs):
        raise RuntimeError("a bug between claim and send")

    monkeypatch.setattr(sender.Sender, "deliver", broken)
    with pytest.raises(RuntimeError):
        send_batches(app, result)
    rows = _rows()
    # "a" was claimed but never reached the server: queued again with its attempt undone,
    # not left `sending` for recovery to call `unknown`.
    assert {(r.status, r.claimed_by, r.attempts) for r in rows.values()} == {("queued", None, 0)}
    assert smtp_server.received == []
    later = datetime.now(UTC) + timedelta(
        seconds=max(settings.send_lease_seconds, settings.queued_stale_seconds) + 5
    )
    recovered = _recover(app, now=later)
    assert not recovered.unknown and recovered.requeued == 2


def test_handed_back_and_newly_queued_rows_have_no_holder(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@example.org", "b@example.org"])
    result = dispatch(app)
    db.session.execute(update(Campaign).values(status="paused"))  # paused after dispatch
    db.session.commit()
    send_batches(app, result)
    rows = _rows()
    assert {(r.status, r.claimed_by) for r in rows.values()} == {("pending", None)}

    # A row keeps its last holder after a deferral; queued again, it is nobody's until its
    # new task starts (else a lost task would leave it queued under a live process for good).
    db.session.execute(update(Campaign).values(status="running"))
    db.session.execute(update(Recipient).values(claimed_by="elsewhere:1:alive"))
    db.session.commit()
    assert dispatch(app).queued == 2
    assert {(r.status, r.claimed_by) for r in _rows().values()} == {("queued", None)}
