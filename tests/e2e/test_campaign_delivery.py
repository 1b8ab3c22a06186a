"""A campaign created in the database is really sent by a real worker, over SMTP, through
three accounts, within every cap, each recipient exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import select

from app.extensions import db
from app.models import Account, LimitOverride, Recipient
from tests.e2e.conftest import status_counts, wait_until
from tests.pipeline import smtp_account

DOMAINS = [f"d{i}.example" for i in range(5)]


def _recipients(per_domain: int) -> list[str]:
    return [f"user{n}@{domain}" for domain in DOMAINS for n in range(per_domain)]


def _override(scope: str, key: str, per_day: int) -> None:
    # The default client's (the system row alone has none).
    client_id = None if scope == "system" else 1
    db.session.add(LimitOverride(client_id=client_id, scope=scope, key=key, per_day=per_day))
    db.session.commit()


def _received_by_recipient(servers) -> Counter[str]:
    return Counter(rcpt for server in servers for r in server.received for rcpt in r.recipients)


def _assert_exactly_once(servers, campaign_id: int) -> list[Recipient]:
    db.session.rollback()
    sent = (
        db.session.execute(
            select(Recipient).where(
                Recipient.campaign_id == campaign_id, Recipient.status == "sent"
            )
        )
        .scalars()
        .all()
    )
    received = _received_by_recipient(servers)
    assert max(received.values()) == 1, "a recipient received two copies"
    assert set(received) == {r.email for r in sent}
    ids = [r.message_id for server in servers for r in server.received]
    assert len(ids) == len(set(ids)) == len(sent)
    assert set(ids) == {r.message_id for r in sent}
    return sent


def test_campaign_is_sent_exactly_once_within_every_domain_cap(stack, factory, smtp_servers):
    a, b, c = smtp_servers
    first = factory.create_account(**smtp_account(a), email="one@brand.example", daily_limit=100)
    second = factory.create_account(**smtp_account(b), email="two@brand.example", daily_limit=100)
    third = factory.create_account(**smtp_account(c), email="three@other.example", daily_limit=100)
    _override("sending_domain", "brand.example", 150)
    for domain in DOMAINS:
        _override("recipient_domain", domain, 50)
    campaign = factory.create_running_campaign(_recipients(60))  # 300 recipients, 60 per domain

    # 5 domains x 50 = 250 may go today; the accounts could take 300, brand.example 150.
    wait_until(lambda: status_counts(campaign.id).get("sent", 0) == 250, 90, "250 sent")
    wait_until(
        lambda: status_counts(campaign.id) == {"sent": 250, "pending": 50}, 30, "the rest waits"
    )
    sent = _assert_exactly_once(smtp_servers, campaign.id)

    by_account = Counter(r.account_id for r in sent)
    assert all(by_account[acc.id] <= 100 for acc in (first, second, third))
    assert by_account[first.id] + by_account[second.id] <= 150
    assert len(a.received) == by_account[first.id]
    assert len(b.received) == by_account[second.id]
    assert len(c.received) == by_account[third.id]
    assert Counter(r.domain for r in sent) == {domain: 50 for domain in DOMAINS}

    # The rest waits for its recipient domain's window: the first send there plus a day.
    first_send = {
        domain: min(
            r.received_at
            for s in smtp_servers
            for r in s.received
            if r.recipients[0].endswith("@" + domain)
        )
        for domain in DOMAINS
    }
    waiting = (
        db.session.execute(
            select(Recipient).where(
                Recipient.campaign_id == campaign.id, Recipient.status == "pending"
            )
        )
        .scalars()
        .all()
    )
    for row in waiting:
        expected = first_send[row.domain] + 86400
        assert abs(row.next_attempt_at.timestamp() - expected) < 10, row.domain
    assert status_counts(campaign.id)["pending"] == 50


def test_account_caps_hold_and_the_rest_waits_for_the_first_account_to_free(
    stack, factory, smtp_servers
):
    accounts = [
        factory.create_account(**smtp_account(server), daily_limit=40) for server in smtp_servers
    ]
    for domain in DOMAINS:
        _override("recipient_domain", domain, 1000)
    campaign = factory.create_running_campaign(_recipients(40))  # 200 recipients, 120 may go
    started = time.time()
    wait_until(
        lambda: status_counts(campaign.id) == {"sent": 120, "pending": 80}, 90, "caps reached"
    )
    sent = _assert_exactly_once(smtp_servers, campaign.id)
    assert Counter(r.account_id for r in sent) == {acc.id: 40 for acc in accounts}
    db.session.expire_all()
    assert all(db.session.get(Account, acc.id).status == "active" for acc in accounts)
    waiting = (
        db.session.execute(select(Recipient.next_attempt_at).where(Recipient.status == "pending"))
        .scalars()
        .all()
    )
    # No account has room before its own first send leaves the rolling day.
    earliest = min(r.received_at for s in smtp_servers for r in s.received)
    for at in waiting:
        assert at.timestamp() >= earliest + 86400 - 10
        assert at <= datetime.fromtimestamp(started + 86400 + 60, UTC)
