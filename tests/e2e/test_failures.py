"""Failure injection at the SMTP servers, with the real worker and dispatcher running."""

from __future__ import annotations

import email
from email.policy import default as default_policy
from urllib.parse import urlparse

from celery import Celery
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Recipient, Suppression
from tests.e2e.conftest import BROKER_URL, settled, status_counts, wait_until
from tests.pipeline import smtp_account
from tests.smtp_server import ScriptedSMTPServer


def _emails(n: int, domain: str = "gmail.com") -> list[str]:
    return [f"person{i}@{domain}" for i in range(n)]


def _account(account_id: int) -> Account:
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(Account, account_id)


def _copies(servers, address: str) -> int:
    return sum(len(s.messages_for(address)) for s in servers)


def test_421_defers_then_the_retry_is_sent(stack, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    # Scripted before the campaign runs: the live dispatcher may send at once.
    smtp_server.fail_all(421, "4.7.0 Try again later, closing connection.", times=2)
    campaign = factory.create_running_campaign(_emails(8))
    wait_until(settled(campaign.id), 60, "all delivered")
    assert status_counts(campaign.id) == {"sent": 8}
    assert all(_copies([smtp_server], e) == 1 for e in _emails(8))
    attempts = db.session.execute(select(Recipient.attempts)).scalars().all()
    assert sorted(attempts) == [1] * 6 + [2] * 2


def test_535_disables_the_account_and_its_recipients_go_through_the_others(
    stack, factory, smtp_servers
):
    with ScriptedSMTPServer(auth=("user", "right")) as locked:
        bad = factory.create_account(
            **smtp_account(locked), username="user", password="wrong", daily_limit=1000
        )
        for server in smtp_servers[:2]:
            factory.create_account(**smtp_account(server), daily_limit=100)
        campaign = factory.create_running_campaign(_emails(60))
        wait_until(settled(campaign.id), 60, "all delivered")
        assert status_counts(campaign.id) == {"sent": 60}
        assert _account(bad.id).status == "disabled"
        assert locked.received == []
        assert all(_copies(smtp_servers, e) == 1 for e in _emails(60))


def test_550_5_1_1_bounces_and_suppresses_the_address(stack, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    for gone in ("person3@gmail.com", "person7@gmail.com"):
        smtp_server.fail_rcpt(
            gone, 550, "5.1.1 The email account that you tried to reach does not exist."
        )
    campaign = factory.create_running_campaign(_emails(10))
    wait_until(settled(campaign.id), 60, "all done")
    assert status_counts(campaign.id) == {"sent": 8, "bounced": 2}
    suppressed = db.session.execute(select(Suppression.value)).scalars().all()
    assert sorted(suppressed) == ["person3@gmail.com", "person7@gmail.com"]


def test_550_5_4_5_pauses_the_account_until_its_window_frees(stack, factory, smtp_servers):
    quota, other, _ = smtp_servers
    gmail = factory.create_account(**smtp_account(quota), provider="gmail", daily_limit=1000)
    factory.create_account(**smtp_account(other), daily_limit=1000)
    sent_first = {"count": 0}

    def quota_after_five(recipient: str, attempt: int):
        sent_first["count"] += 1
        if sent_first["count"] > 5:
            return 550, "5.4.5 Daily user sending limit exceeded. For more information, visit ..."
        return None

    quota.script(quota_after_five)
    campaign = factory.create_running_campaign(_emails(40))
    wait_until(settled(campaign.id), 60, "all delivered")
    assert status_counts(campaign.id) == {"sent": 40}
    paused = _account(gmail.id)
    assert paused.status == "paused" and "daily_quota" in paused.paused_reason
    first = min(r.received_at for r in quota.received)
    assert abs(paused.paused_until.timestamp() - (first + 86400)) < 10
    assert all(_copies(smtp_servers, e) == 1 for e in _emails(40))


def test_connection_dropped_mid_data_is_retried_and_sent_once(stack, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    smtp_server.drop_connection_mid_data(times=1)
    campaign = factory.create_running_campaign(_emails(5))
    wait_until(settled(campaign.id), 60, "all delivered")
    assert status_counts(campaign.id) == {"sent": 5}
    assert all(_copies([smtp_server], e) == 1 for e in _emails(5))


def test_a_task_delivered_twice_sends_once(stack, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(status="draft")
    rows = factory.create_recipients(campaign, _emails(10), status="queued", account_id=account.id)
    db.session.execute(
        campaign.__table__.update()
        .where(campaign.__table__.c.id == campaign.id)
        .values(status="running")
    )
    db.session.commit()
    by_batch = [r.id for r in rows[:5]]
    by_message = [r.id for r in rows[5:]]
    broker = Celery(broker=BROKER_URL)
    for _ in range(2):  # the broker redelivers: every task arrives twice
        broker.send_task(
            "sendfleet.send_batch", args=[account.id, by_batch], queue="sendfleet.send"
        )
        for row_id in by_message:
            broker.send_task("sendfleet.send_message", args=[row_id], queue="sendfleet.send")
    wait_until(settled(campaign.id), 60, "all delivered")
    assert status_counts(campaign.id) == {"sent": 10}
    assert all(_copies([smtp_server], e) == 1 for e in _emails(10))
    assert "TypeError" not in stack.log("worker")


def test_one_click_unsubscribe_from_the_received_header(stack, factory, smtp_server, client):
    factory.create_account(**smtp_account(smtp_server))
    first = factory.create_running_campaign(["reader@example.org", "other@example.org"])
    wait_until(settled(first.id), 60, "first campaign delivered")
    [received] = smtp_server.messages_for("reader@example.org")
    message = email.message_from_bytes(received.data, policy=default_policy)
    https = next(
        part.strip(" <>")
        for part in message["List-Unsubscribe"].split(",")
        if part.strip().startswith("<https")
    )
    response = client.post(
        urlparse(https).path,
        data={"List-Unsubscribe": "One-Click"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    second = factory.create_running_campaign(["reader@example.org", "other@example.org"])
    wait_until(settled(second.id), 60, "second campaign done")
    assert status_counts(second.id) == {"sent": 1, "suppressed": 1}
    assert len(smtp_server.messages_for("reader@example.org")) == 1
    assert len(smtp_server.messages_for("other@example.org")) == 2
