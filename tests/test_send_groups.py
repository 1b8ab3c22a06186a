"""The send path claims SEND_CLAIM_GROUP rows in one commit: fewer commits per message, and
still a durable claim before any SMTP. A group ends at the first outcome that is not a
plain success, so that outcome is judged before anything else goes; a process that dies
mid-group leaves at most the group `sending`."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Event, Recipient
from tests.pipeline import dispatch, send_batches, smtp_account
from worker.jobs import sender


def _rows() -> dict[str, Recipient]:
    db.session.expire_all()
    return {r.email: r for r in db.session.execute(select(Recipient)).scalars()}


def _emails(n: int) -> list[str]:
    return [f"r{i}@example.org" for i in range(n)]


def test_a_group_is_claimed_in_one_commit_before_its_first_message(
    app, factory, smtp_server, groups_of_3
):
    factory.create_account(**smtp_account(smtp_server))
    emails = _emails(7)
    factory.create_running_campaign(emails)
    result = dispatch(app)
    smtp_server.delay_data_reply(1.5)  # the first message stalls inside its transaction
    worker = threading.Thread(target=send_batches, args=(app, result))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while _rows()[emails[0]].status != "sending":
            assert time.monotonic() < deadline, "the first group was never claimed"
            time.sleep(0.02)
        statuses = [_rows()[e].status for e in emails]
        assert statuses == ["sending"] * 3 + ["queued"] * 4
        assert {_rows()[e].message_id is not None for e in emails[:3]} == {True}
    finally:
        worker.join(30)
    rows = _rows()
    assert {rows[e].status for e in emails} == {"sent"}
    assert [len(smtp_server.messages_for(e)) for e in emails] == [1] * 7
    sent = db.session.execute(select(Event).where(Event.type == "sent")).scalars().all()
    assert len(sent) == 7


def test_an_outcome_that_is_not_plain_success_ends_its_group(
    app, factory, smtp_server, groups_of_3
):
    """r1 bounces: r2, claimed with it, goes back unattempted and is claimed again later
    (one attempt in all, not two)."""
    factory.create_account(**smtp_account(smtp_server))
    emails = _emails(5)
    factory.create_running_campaign(emails)
    smtp_server.fail_rcpt(emails[1], 550, "5.1.1 user unknown")
    send_batches(app, dispatch(app))
    rows = _rows()
    assert [rows[e].status for e in emails] == ["sent", "bounced", "sent", "sent", "sent"]
    assert [rows[e].attempts for e in emails] == [1] * 5
    assert [smtp_server.attempts(e) for e in emails] == [1] * 5


def test_an_error_mid_group_gives_back_the_rows_it_did_not_send(
    app, factory, smtp_server, groups_of_3, monkeypatch
):
    factory.create_account(**smtp_account(smtp_server))
    emails = _emails(6)
    factory.create_running_campaign(emails)
    result = dispatch(app)
    calls = []
    real = sender.Sender.deliver

    def dies_on_the_second(self, claimed, batch_result, **kwargs):
        calls.append(claimed.sent.email)
        if len(calls) == 2:
            raise RuntimeError("the process dies here")
        return real(self, claimed, batch_result, **kwargs)

    monkeypatch.setattr(sender.Sender, "deliver", dies_on_the_second)
    with pytest.raises(RuntimeError):
        send_batches(app, result)
    rows = _rows()
    statuses = [rows[e].status for e in emails]
    # The first went out and its reply is written all the same; the rest of the claimed
    # group was never handed to the server, so it goes back to queued (its attempt undone)
    # instead of staying `sending`, which recovery would call `unknown`; nothing of the next
    # group was claimed. All of it is released to recovery, which returns queued rows to
    # pending. (A process killed outright leaves its claimed group `sending`: at most
    # SEND_CLAIM_GROUP rows, tests/e2e.)
    assert statuses == ["sent"] + ["queued"] * 5
    assert {rows[e].claimed_by for e in emails[1:]} == {None}
    assert [rows[e].attempts for e in emails] == [1] + [0] * 5
    assert len(smtp_server.received) == 1
