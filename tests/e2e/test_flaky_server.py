"""A receiving side that refuses a fifth of the recipients (with real replies) and drops about
one connection in twenty must not take the pool out of rotation: with the real worker and
beat, every account stays active, the campaign completes, nothing is delivered twice, and
each recipient ends in the state its server's reply calls for."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Campaign, Event, Recipient
from tests.e2e.conftest import Stack, make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account

DOMAINS = [f"d{i}.example" for i in range(5)]
NO_SUCH_USER = "5.1.1 The email account that you tried to reach does not exist."
GREYLISTED = "4.2.0 Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/"


@pytest.fixture(scope="module")
def flaky_stack(settings_env: dict[str, str], app: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    running = make_stack(
        settings_env,
        tmp_path_factory.mktemp("flaky"),
        # Short domain back-offs so greylisted domains come back within the test.
        DOMAIN_BACKOFF_SECONDS="1",
        DOMAIN_BACKOFF_MAX_SECONDS="2",
        LIMIT_RECIPIENT_DOMAIN_PER_DAY="100000",
        # A fifth refused at random (6.7 % bounced, 6.7 % failed) crosses the rate guards'
        # 10 % in early windows; this test is about the pool, tests/e2e/test_guards.py
        # about the guards.
        GUARD_BOUNCE_RATE_PERCENT="50",
        GUARD_FAILURE_RATE_PERCENT="50",
    )
    running.start_worker()
    running.start_beat()
    yield running
    running.stop()


def _script(emails: list[str], rng: random.Random) -> dict[str, str]:
    """A fifth of the recipients, at random: a third unknown, a third refused by an access
    map, a third greylisted once."""
    chosen = rng.sample(emails, len(emails) // 5)
    kinds = ("unknown", "access", "greylist")
    return {email: kinds[i % 3] for i, email in enumerate(chosen)}


def test_random_refusals_and_dropped_connections_leave_the_pool_in_rotation(
    flaky_stack, factory, smtp_servers
):
    rng = random.Random(14)
    emails = [f"user{n}@{domain}" for domain in DOMAINS for n in range(36)]  # 180
    fate = _script(emails, rng)
    seen: Counter[str] = Counter()  # RCPTs per recipient, across every server
    lock = threading.Lock()

    def rcpt(address: str, attempt: int) -> tuple[int, str] | None:
        with lock:
            seen[address] += 1
            first = seen[address] == 1
        kind = fate.get(address.lower())
        if kind == "unknown":
            return 550, NO_SUCH_USER
        if kind == "access":
            return 554, f"5.7.1 <{address}>: Recipient address rejected: Access denied"
        if kind == "greylist" and first:
            return 450, f"4.2.0 <{address}>: {GREYLISTED}"
        return None

    # About one in twenty at random, and always each server's first connection and third
    # DATA: which random draws fall on a connection depends on the run's timing, and a
    # pooled run opens few connections, so chance alone sometimes dropped none.
    drops = random.Random(20)
    for server in smtp_servers:
        server.script(rcpt)
        server.drop_connections(lambda n: n == 1 or drops.random() < 0.05)
        server.drop_data_when(lambda n: n == 3 or drops.random() < 0.05)
    accounts = [
        factory.create_account(**smtp_account(server), daily_limit=1000, per_minute_limit=1000)
        for server in smtp_servers
    ]
    campaign = factory.create_running_campaign(emails)

    wait_until(settled(campaign.id), 120, "every recipient in a final state")
    db.session.expire_all()
    assert all(db.session.get(Account, a.id).status == "active" for a in accounts)
    wait_until(
        lambda: db.session.get(Campaign, campaign.id, populate_existing=True).status == "completed",
        30,
        "campaign completed",
    )

    expected = Counter(
        {"unknown": "bounced", "access": "failed"}.get(fate.get(e, ""), "sent") for e in emails
    )
    assert status_counts(campaign.id) == dict(expected)
    rows = db.session.execute(select(Recipient)).scalars().all()
    received = Counter(r for s in smtp_servers for m in s.received for r in m.recipients)
    for row in rows:
        kind = fate.get(row.email)
        if kind == "unknown":
            assert (row.status, row.last_smtp_code) == ("bounced", 550), row.email
        elif kind == "access":
            assert (row.status, row.last_smtp_code) == ("failed", 554), row.email
        else:
            assert row.status == "sent", (row.email, row.last_smtp_text)
        assert received[row.email] == (1 if row.status == "sent" else 0), row.email
    greylisted = [r for r in rows if fate.get(r.email) == "greylist"]
    assert greylisted and all(r.attempts >= 2 for r in greylisted)
    # The drops really happened, before the greeting and at DATA (the test exercised what it
    # claims to), and none of them, nor any refusal, paused an account.
    lost = db.session.execute(
        select(Event.data["stage"].astext).where(
            Event.type == "deferred", Event.data["reason"].astext == "connection_lost"
        )
    ).scalars()
    assert {"connect", "data"} <= set(lost)
    assert db.session.execute(select(Event).where(Event.type == "account_paused")).first() is None
