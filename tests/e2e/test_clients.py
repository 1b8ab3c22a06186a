"""End-to-end with clients: a real worker and beat send two clients' campaigns at once, each
through its own accounts only; an unsubscribe (the real List-Unsubscribe link, one-click)
stops its own client's later campaign and no other's; a hard bounce stops everyone's; a
client's daily cap holds at the SMTP servers; and a 100,000-row campaign of one client
delays another client's small one by at most a dispatcher tick, also when a shared system
limit is what binds."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import func, select, text, update

from app.extensions import db
from app.models import Account, Campaign, LimitOverride, Recipient, Suppression
from app.services.limits import SYSTEM_KEY
from app.services.unsubscribe import UnsubscribeTokens
from rotator.limiter import Limiter, Scope, Window
from tests.e2e.conftest import Stack, make_stack, settled, status_counts, wait_until
from tests.pipeline import smtp_account
from tests.smtp_server import Received, ScriptedSMTPServer

# This module's dispatcher tick. Longer than the e2e default (0.5 s) so that "within one
# tick" is measured against a tick that is clearly longer than the fixed costs it includes.
TICK = 1.0
# Added to a tick where a delay is bounded by one: beat's timer, the broker round trip to a
# free worker process, and one dispatcher batch (its claim sorts the 100,000-row backlog of
# the big campaign), from tens to about 150 milliseconds here; half a tick leaves room for
# a loaded two-CPU test machine without hiding a skipped tick (which would add a whole one).
MARGIN = 0.5


@pytest.fixture(scope="module")
def stack(settings_env: dict[str, str], app: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    running = make_stack(
        settings_env,
        tmp_path_factory.mktemp("clients-stack"),
        DISPATCH_INTERVAL_SECONDS=str(TICK),
        # Every test here sends many messages to few domains; those windows are not tested.
        LIMIT_RECIPIENT_DOMAIN_PER_DAY="1000000",
    )
    running.start_worker()
    running.start_beat()
    yield running
    running.stop()


@pytest.fixture
def sinks() -> Iterator[Callable[[int], list[ScriptedSMTPServer]]]:
    """make(n): n more SMTP servers, one per sender account, stopped after the test."""
    started: list[ScriptedSMTPServer] = []

    def make(n: int) -> list[ScriptedSMTPServer]:
        servers = [ScriptedSMTPServer().start() for _ in range(n)]
        started.extend(servers)
        return servers

    yield make
    for server in started:
        server.stop()


@dataclass
class Sender:
    """A client's sender accounts, each on its own SMTP server."""

    client_id: int
    accounts: list[Account]
    servers: list[ScriptedSMTPServer]

    @property
    def account_ids(self) -> set[int]:
        return {a.id for a in self.accounts}

    def received(self) -> list[Received]:
        return [r for server in self.servers for r in server.received]

    def copies(self) -> Counter[str]:
        return Counter(rcpt for r in self.received() for rcpt in r.recipients)


def _sender(factory: Any, servers: list[ScriptedSMTPServer], tag: str, **account: Any) -> Sender:
    client_id = factory.create_client(name=f"client {tag}").id
    accounts = [
        factory.create_account(
            **smtp_account(server),
            client_id=client_id,
            email=f"sender{i}@brand-{tag}.example",
            daily_limit=100_000,
            **account,
        )
        for i, server in enumerate(servers)
    ]
    return Sender(client_id, accounts, servers)


def _draft(factory: Any, sender: Sender, emails: list[str]) -> Campaign:
    campaign = factory.create_campaign(client_id=sender.client_id)
    factory.create_recipients(campaign, emails)
    return campaign


def _start_together(*campaigns: Campaign) -> None:
    """One transaction: the dispatcher sees all of them running from the same tick on."""
    db.session.execute(
        update(Campaign)
        .where(Campaign.id.in_([c.id for c in campaigns]))
        .values(status="running", started_at=func.now())
    )
    db.session.commit()


def _start_via_api(admin_api: Any, sender: Sender, campaign: Campaign) -> float:
    """Starts the campaign as an operator does; returns the moment just before asking."""
    started = time.time()
    response = admin_api.post(
        f"/api/v1/campaigns/{campaign.id}/start",
        headers={"X-Sendfleet-Client": str(sender.client_id)},
    )
    assert response.status_code == 200, response.get_json()
    return started


def _emails(prefix: str, n: int, domain: str) -> list[str]:
    return [f"{prefix}{i}@{domain}" for i in range(n)]


def _rows(campaign_id: int) -> list[Recipient]:
    db.session.rollback()
    return list(
        db.session.execute(select(Recipient).where(Recipient.campaign_id == campaign_id))
        .scalars()
        .all()
    )


def _status_of(campaign_id: int, email: str) -> str:
    db.session.rollback()
    return db.session.execute(
        select(Recipient.status).where(
            Recipient.campaign_id == campaign_id, Recipient.email == email
        )
    ).scalar_one()


def _wait_settled(*campaigns: Campaign, timeout: float = 60) -> None:
    for campaign in campaigns:
        wait_until(settled(campaign.id), timeout, f"campaign {campaign.id} to settle")


def _unsubscribe_path(message: Received, public_base_url: str) -> str:
    header = BytesHeaderParser(policy=default_policy).parsebytes(message.data)
    assert header["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    urls = re.findall(r"<(https?://[^>]+)>", str(header["List-Unsubscribe"]))
    assert len(urls) == 1, header["List-Unsubscribe"]
    assert urls[0].startswith(public_base_url + "/u/"), urls[0]
    return urlparse(urls[0]).path


def _bulk_insert(campaign: Campaign, n: int, domain: str) -> None:
    """n recipients in one statement (the import path would take minutes for 100,000)."""
    db.session.execute(
        text(
            "INSERT INTO recipients (campaign_id, email, domain) "
            "SELECT :campaign_id, 'big' || g || '@' || :domain, :domain "
            "FROM generate_series(1, :n) AS g"
        ),
        {"campaign_id": campaign.id, "domain": domain, "n": n},
    )
    db.session.commit()


def _queued_times(campaign_id: int) -> list[float]:
    db.session.rollback()
    return sorted(
        at.timestamp()
        for at in db.session.execute(
            select(Recipient.queued_at).where(
                Recipient.campaign_id == campaign_id, Recipient.queued_at.is_not(None)
            )
        ).scalars()
    )


def _queued_count(campaign_id: int) -> int:
    return len(_queued_times(campaign_id))


def _seconds(times: list[float], since: float) -> str:
    return f"{times[0] - since:.3f}s" if times else "never"


def _cap(client_id: int | None, scope: str, key: str, **limit: int) -> None:
    db.session.add(LimitOverride(client_id=client_id, scope=scope, key=key, **limit))
    db.session.commit()


# --- 1. two clients at once ------------------------------------------------------------


def test_two_clients_send_at_once_each_only_through_its_own_accounts(stack, factory, sinks):
    a = _sender(factory, sinks(2), "a")
    b = _sender(factory, sinks(2), "b")
    shared = _emails("shared", 10, "both.example")  # on both clients' lists
    mine = _emails("a", 50, "list-a.example") + shared
    theirs = _emails("b", 50, "list-b.example") + shared
    first, second = _draft(factory, a, mine), _draft(factory, b, theirs)
    _start_together(first, second)

    _wait_settled(first, second)
    assert status_counts(first.id) == {"sent": 60}
    assert status_counts(second.id) == {"sent": 60}
    # Each server is one account's: what it received came with that account's MAIL FROM.
    for sender in (a, b):
        for account, server in zip(sender.accounts, sender.servers, strict=True):
            assert {r.envelope_from for r in server.received} <= {account.email}
    # Each client's recipients exactly once, and only through its own accounts.
    assert a.copies() == Counter(mine)
    assert b.copies() == Counter(theirs)
    assert all(a.copies()[e] + b.copies()[e] == 2 for e in shared)
    ids = [r.message_id for r in a.received() + b.received()]
    assert len(ids) == len(set(ids)) == 120
    for campaign, sender in ((first, a), (second, b)):
        rows = _rows(campaign.id)
        assert {r.account_id for r in rows} <= sender.account_ids
        assert {r.message_id for r in rows} == {r.message_id for r in sender.received()}
    # At once: each client's sending overlaps the other's.
    span_a = [r.received_at for r in a.received()]
    span_b = [r.received_at for r in b.received()]
    print(
        f"\n[two clients] A sent {min(span_a):.3f}..{max(span_a):.3f}, "
        f"B sent {min(span_b):.3f}..{max(span_b):.3f}"
    )
    assert min(span_a) < max(span_b) and min(span_b) < max(span_a)


# --- 2. an unsubscribe is its client's --------------------------------------------------


def test_an_unsubscribe_stops_its_clients_later_campaign_but_not_another_clients(
    stack, factory, sinks, client, settings
):
    a = _sender(factory, sinks(1), "a")
    b = _sender(factory, sinks(1), "b")
    person = "pat@people.example"
    earlier = _draft(factory, a, [person, "ann@people.example"])
    _start_together(earlier)
    _wait_settled(earlier)
    assert status_counts(earlier.id) == {"sent": 2}

    # Follow the link of the message pat received, as a mailbox provider's one-click does.
    (message,) = a.servers[0].messages_for(person)
    path = _unsubscribe_path(message, settings.public_base_url)
    row = next(r for r in _rows(earlier.id) if r.email == person)
    tokens = UnsubscribeTokens(settings.secret_key.get_secret_value(), settings.public_base_url)
    assert path == f"/u/{tokens.token(row.id)}"
    response = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    db.session.rollback()
    suppressions = db.session.execute(select(Suppression)).scalars().all()
    assert [(s.value, s.client_id, s.reason) for s in suppressions] == [
        (person, a.client_id, "unsubscribed")
    ]

    later = _draft(factory, a, [person, "bo@people.example"])
    others = _draft(factory, b, [person, "cy@people.example"])
    _start_together(later, others)
    _wait_settled(later, others)

    assert _status_of(later.id, person) in {"unsubscribed", "suppressed"}
    assert _status_of(later.id, "bo@people.example") == "sent"
    assert a.servers[0].attempts(person) == 1  # the first campaign's RCPT, never again
    assert a.copies()[person] == 1
    assert status_counts(others.id) == {"sent": 2}
    (theirs,) = b.servers[0].messages_for(person)
    assert theirs.envelope_from == b.accounts[0].email


# --- 3. a hard bounce is everyone's ------------------------------------------------------


def test_a_hard_bounce_stops_every_clients_later_campaigns(stack, factory, sinks):
    a = _sender(factory, sinks(1), "a")
    b = _sender(factory, sinks(1), "b")
    gone = "gone@people.example"
    a.servers[0].fail_rcpt(
        gone, 550, "5.1.1 The email account that you tried to reach does not exist."
    )
    earlier = _draft(factory, a, [gone, "ann@people.example"])
    _start_together(earlier)
    _wait_settled(earlier)
    assert status_counts(earlier.id) == {"sent": 1, "bounced": 1}
    db.session.rollback()
    suppressions = db.session.execute(select(Suppression)).scalars().all()
    assert [(s.value, s.client_id) for s in suppressions] == [(gone, None)]

    later = _draft(factory, a, [gone, "bo@people.example"])
    others = _draft(factory, b, [gone, "cy@people.example"])
    _start_together(later, others)
    _wait_settled(later, others)

    assert status_counts(later.id) == {"sent": 1, "suppressed": 1}
    assert status_counts(others.id) == {"sent": 1, "suppressed": 1}
    assert _status_of(others.id, gone) == "suppressed"
    assert a.servers[0].attempts(gone) == 1  # the bounce itself
    assert b.servers[0].attempts(gone) == 0  # B never even tried
    assert a.copies()[gone] == b.copies()[gone] == 0


# --- 4. a client's cap holds at the servers ---------------------------------------------


def test_a_client_daily_cap_holds_at_the_servers_over_its_campaigns_and_accounts(
    stack, factory, sinks
):
    cap = 7
    a = _sender(factory, sinks(3), "a")
    b = _sender(factory, sinks(2), "b")
    _cap(a.client_id, "client", str(a.client_id), per_day=cap)
    one = _draft(factory, a, _emails("one", 10, "people.example"))
    two = _draft(factory, a, _emails("two", 10, "people.example"))
    free = _draft(factory, b, _emails("free", 15, "people.example"))
    _start_together(one, two, free)

    _wait_settled(free)
    assert status_counts(free.id) == {"sent": 15}

    def a_parked() -> bool:
        counts = Counter(status_counts(one.id)) + Counter(status_counts(two.id))
        return counts == {"sent": cap, "pending": 20 - cap}

    wait_until(a_parked, 30, f"client A to send {cap} and park the rest")
    time.sleep(3 * TICK)  # a few more dispatcher ticks: nothing else goes
    assert a_parked()
    assert len(a.received()) == cap
    assert len(b.received()) == 15
    sent_by = Counter(r.campaign_id for c in (one, two) for r in _rows(c.id) if r.status == "sent")
    print(f"\n[client cap] A's {cap} sends by campaign: {dict(sent_by)}; B sent 15")
    # The cap is the client's, shared by its campaigns round-robin.
    assert sorted(sent_by.values()) == [cap // 2, cap - cap // 2]
    # What waits is parked until the client's day window frees, not rescanned every tick.
    waiting = [r for c in (one, two) for r in _rows(c.id) if r.status == "pending"]
    soonest = datetime.now(UTC) + timedelta(hours=23)
    assert all(r.next_attempt_at is not None and r.next_attempt_at > soonest for r in waiting)


# --- 5. a huge campaign does not hold up another client's small one ---------------------

BIG = 100_000


def _running_big_campaign(factory: Any, admin_api: Any, sender: Sender) -> Campaign:
    big = factory.create_campaign(client_id=sender.client_id)
    started = time.time()
    _bulk_insert(big, BIG, "big.example")
    print(f"\n[fairness] {BIG} rows inserted in {time.time() - started:.2f}s")
    _start_via_api(admin_api, sender, big)
    wait_until(lambda: len(sender.received()) > 0, 30, "the big campaign's first sends")
    return big


def test_a_huge_campaign_does_not_delay_another_clients_small_one(stack, factory, sinks, admin_api):
    # A's accounts are throttled (5 a minute each), so A has a backlog for the whole test.
    a = _sender(factory, sinks(2), "a", per_minute_limit=5)
    b = _sender(factory, sinks(2), "b")
    big = _running_big_campaign(factory, admin_api, a)
    time.sleep(3 * TICK)  # a few ticks of the dispatcher claiming A's backlog
    small = _draft(factory, b, _emails("small", 20, "people.example"))

    started = _start_via_api(admin_api, b, small)
    wait_until(lambda: len(b.received()) == 20, 30, "all of B's 20")

    queued = _queued_times(small.id)
    arrivals = sorted(r.received_at for r in b.received())
    first_queued, first_sent, last_sent = (
        queued[0] - started,
        arrivals[0] - started,
        arrivals[-1] - started,
    )
    print(
        f"\n[fairness] B start -> first queued {first_queued:.3f}s, first received "
        f"{first_sent:.3f}s, all 20 received {last_sent:.3f}s (tick {TICK}s, margin {MARGIN}s); "
        f"A meanwhile sent {len(a.received())}, pending {status_counts(big.id).get('pending')}"
    )
    assert first_queued <= TICK + MARGIN
    # The whole campaign in that one batch: A's backlog took none of B's share.
    assert queued[-1] == queued[0] and len(queued) == 20
    assert b.copies() == Counter(_emails("small", 20, "people.example"))
    assert status_counts(small.id) == {"sent": 20}
    assert not any(r.recipients[0].startswith("small") for r in a.received())
    # A is still sending its backlog, through its own accounts, within their limits.
    assert status_counts(big.id).get("pending", 0) > BIG - 100
    assert len(a.received()) <= 10
    assert {rcpt.split("@")[1] for r in a.received() for rcpt in r.recipients} == {"big.example"}


def test_under_a_shared_system_limit_the_small_client_gets_half_as_soon_as_room_returns(
    stack, factory, sinks, admin_api, redis_client
):
    """A's first tick fills the system minute; B, started just after, is parked like A's
    rows until room returns; the first batch after that gives B its first send and half of
    the room (the claimed rows alternate between clients)."""
    system = 20  # a minute: A's backlog alone would take all of it
    _cap(None, "system", SYSTEM_KEY, per_minute=system)
    a = _sender(factory, sinks(2), "a")
    b = _sender(factory, sinks(2), "b")
    big = _running_big_campaign(factory, admin_api, a)
    wait_until(lambda: _queued_count(big.id) == system, 10, "A to fill the system minute")
    window = Window(Scope.SYSTEM, SYSTEM_KEY, 60, system)
    room_at = Limiter(redis_client).frees_at(window)
    assert room_at is not None and room_at > time.time() + 30
    small = _draft(factory, b, _emails("small", 20, "people.example"))

    started = _start_via_api(admin_api, b, small)
    # While the minute is full, B waits like A, parked until room returns (no spinning).
    time.sleep(3 * TICK)
    assert _queued_count(small.id) == 0
    db.session.rollback()
    due_at = db.session.execute(
        select(Recipient.next_attempt_at).where(Recipient.campaign_id == small.id)
    ).scalars()
    parked = [at.timestamp() for at in due_at if at is not None]
    assert len(parked) == 20 and all(abs(at - room_at) < 2 for at in parked), parked

    # One tick after room returns (plus the margin), then time for the sends to arrive.
    time.sleep(max(room_at + TICK + MARGIN - time.time(), 0) + 2)
    # A batch's queued_at is when it began, a moment before its reservations: anything
    # after the first minute's burst (room_at - 60) is the refill.
    queued_a = [t for t in _queued_times(big.id) if t > room_at - 30]
    queued_b = _queued_times(small.id)
    arrivals = sorted(r.received_at for r in b.received())
    refill = len(queued_a) + len(queued_b)
    share = len(queued_b) / refill if refill else 0.0
    batch_began = min(queued_a + queued_b, default=float("nan")) - room_at
    print(
        f"\n[fairness, system {system}/min] B started {room_at - started:.1f}s before room "
        f"returned and was parked until room {max(parked) - room_at:+.3f}s; the refill batch "
        f"began at room {batch_began:+.3f}s; room -> B's first queued "
        f"{_seconds(queued_b, room_at)}, first received {_seconds(arrivals, room_at)}; "
        f"refill: A {len(queued_a)}, B {len(queued_b)} (B's share {share:.0%})"
    )
    assert queued_b, (
        f"B got none of the minute's room, A took {len(queued_a)}: the refill batch began at "
        f"room {batch_began:+.3f}s, B's rows were parked until room "
        f"{max(parked) - room_at:+.3f}s"
    )
    assert queued_b[0] - room_at <= TICK + MARGIN
    assert refill == system  # the system minute holds
    assert 0.4 <= share <= 0.6
    assert len(b.received()) == len(queued_b)
    assert set(b.copies()) <= set(_emails("small", 20, "people.example"))
    assert max(b.copies().values()) == 1
