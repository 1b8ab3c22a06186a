"""The dispatcher with several clients: each client's accounts send only its campaigns,
capacity is shared between clients before campaigns, a client's caps are one more scope
of the same reservation, paused clients send nothing, and unsubscribes, recipient-domain
limits and back-offs stay within the client they belong to."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import Account, Campaign, Client, DomainBackoff, LimitOverride, Recipient
from tests.pipeline import dispatch


def _emails(n: int, domain: str = "to.example", prefix: str = "u") -> list[str]:
    return [f"{prefix}{i}@{domain}" for i in range(n)]


def _by(column, campaign_id: int | None = None) -> Counter:
    stmt = select(column)
    if campaign_id is not None:
        stmt = stmt.where(Recipient.campaign_id == campaign_id)
    return Counter(db.session.execute(stmt).scalars())


def _account(factory, client_id: int, **overrides) -> Account:
    overrides.setdefault("per_minute_limit", 100_000)
    return factory.create_account(client_id=client_id, **overrides)


def _running(factory, client_id: int, emails: list[str], **overrides) -> Campaign:
    return factory.create_running_campaign(emails, client_id=client_id, **overrides)


def _two_clients(factory) -> tuple[int, int]:
    return 1, factory.create_client(name="B").id


def _cap(client_id: int, scope: str, key: str, **limit) -> None:
    db.session.add(LimitOverride(client_id=client_id, scope=scope, key=key, **limit))
    db.session.commit()


def test_a_clients_accounts_send_only_its_campaigns(app, factory):
    a, b = _two_clients(factory)
    mine = _account(factory, a)
    theirs = _account(factory, b)
    first = _running(factory, a, _emails(6, prefix="a"))
    second = _running(factory, b, _emails(6, prefix="b"))
    assert dispatch(app).queued == 12
    assert _by(Recipient.account_id, first.id) == {mine.id: 6}
    assert _by(Recipient.account_id, second.id) == {theirs.id: 6}


def test_a_client_without_usable_accounts_waits_and_never_borrows_anothers(app, factory):
    a, b = _two_clients(factory)
    _account(factory, a)
    orphan = _running(factory, b, _emails(3))
    result = dispatch(app)
    assert result.queued == 0 and result.postponed == 3
    assert _by(Recipient.status, orphan.id) == {"pending": 3}


def test_a_campaign_cannot_name_another_clients_account(app, factory):
    _, b = _two_clients(factory)
    theirs = _account(factory, b)
    # Even if a row says so (the API refuses it with 422): the account is not a candidate.
    campaign = _running(factory, 1, _emails(2), account_ids=[theirs.id])
    assert dispatch(app).queued == 0
    assert _by(Recipient.status, campaign.id) == {"pending": 2}


def test_the_batch_is_shared_between_clients_before_campaigns(app, factory, settings, monkeypatch):
    a, b = _two_clients(factory)
    _account(factory, a, daily_limit=100_000)
    _account(factory, b, daily_limit=100_000)
    # Client A has three big campaigns, client B one small one started last.
    big = [_running(factory, a, _emails(200, "gmail.com", f"a{n}-")) for n in range(3)]
    small = _running(factory, b, _emails(20, "gmail.com", "b"))
    monkeypatch.setitem(
        app.extensions, "settings", settings.model_copy(update={"dispatch_batch_size": 60})
    )
    result = dispatch(app)
    assert result.claimed == result.queued == 60
    # B's 20 all go in the first batch (its half was 30); A's three share the other half
    # and, in a second round, the 10 B did not need.
    assert _by(Recipient.status, small.id) == {"queued": 20}
    assert sorted(_by(Recipient.status, c.id)["queued"] for c in big) == [13, 13, 14]


def test_a_shared_system_limit_is_interleaved_between_clients(app, factory, admin_api):
    a, b = _two_clients(factory)
    _account(factory, a, daily_limit=100_000)
    _account(factory, b, daily_limit=100_000)
    huge = _running(factory, a, _emails(300, prefix="a"))
    small = _running(factory, b, _emails(20, prefix="b"))
    assert admin_api.put("/api/v1/limits/system/*", json={"per_minute": 10}).status_code == 200
    assert dispatch(app).queued == 10
    # The 10 slots of the minute alternate between the clients, not first come first served.
    assert _by(Recipient.status, huge.id)["queued"] == 5
    assert _by(Recipient.status, small.id)["queued"] == 5


def test_a_client_day_cap_holds_across_its_accounts_and_campaigns(app, factory):
    a, b = _two_clients(factory)
    for _ in range(3):
        _account(factory, a)
    _account(factory, b)
    _cap(a, "client", str(a), per_day=7)
    one = _running(factory, a, _emails(10, prefix="x"))
    two = _running(factory, a, _emails(10, prefix="y"))
    other = _running(factory, b, _emails(10, prefix="z"))
    result = dispatch(app)
    assert _by(Recipient.status, one.id)["queued"] + _by(Recipient.status, two.id)["queued"] == 7
    assert _by(Recipient.status, other.id) == {"queued": 10}  # the cap is A's alone
    assert result.postponed == 13
    # Postponed to when the client's window frees, so they are not rescanned every tick.
    assert dispatch(app).claimed == 0


def test_a_client_minute_cap_is_reserved_with_the_other_scopes(app, factory):
    a, _ = _two_clients(factory)
    _account(factory, a)
    _cap(a, "client", str(a), per_minute=4)
    campaign = _running(factory, a, _emails(9))
    assert dispatch(app).queued == 4
    assert _by(Recipient.status, campaign.id) == {"queued": 4, "pending": 5}


def test_a_paused_client_sends_nothing_until_resumed(app, factory):
    a, b = _two_clients(factory)
    _account(factory, a)
    _account(factory, b)
    paused = _running(factory, b, _emails(3, prefix="b"))
    going = _running(factory, a, _emails(3, prefix="a"))
    db.session.execute(update(Client).where(Client.id == b).values(status="paused"))
    db.session.commit()
    assert dispatch(app).queued == 3
    assert _by(Recipient.status, paused.id) == {"pending": 3}
    assert _by(Recipient.status, going.id) == {"queued": 3}
    db.session.execute(update(Client).where(Client.id == b).values(status="active"))
    db.session.commit()
    assert dispatch(app).queued == 3


def test_an_unsubscribe_suppresses_its_own_clients_sends_only(app, factory):
    a, b = _two_clients(factory)
    _account(factory, a)
    _account(factory, b)
    factory.suppress("p@to.example", "unsubscribed", client_id=a)
    factory.suppress("gone@to.example", "bounced")  # global
    mine = _running(factory, a, ["p@to.example", "gone@to.example", "ok@to.example"])
    theirs = _running(factory, b, ["p@to.example", "gone@to.example", "ok@to.example"])
    result = dispatch(app)
    assert result.suppressed == 3
    rows = db.session.execute(select(Recipient.campaign_id, Recipient.email, Recipient.status))
    status = {(c, e): s for c, e, s in rows}
    assert status[(mine.id, "p@to.example")] == "suppressed"
    assert status[(theirs.id, "p@to.example")] == "queued"
    assert (
        status[(mine.id, "gone@to.example")]
        == status[(theirs.id, "gone@to.example")]
        == ("suppressed")
    )


def test_recipient_domain_limits_are_per_client(app, factory, settings):
    a, b = _two_clients(factory)
    _account(factory, a)
    _account(factory, b)
    _cap(a, "recipient_domain", "corp.example", per_day=2)
    mine = _running(factory, a, _emails(5, "corp.example", "a"))
    theirs = _running(factory, b, _emails(5, "corp.example", "b"))
    dispatch(app)
    assert _by(Recipient.status, mine.id) == {"queued": 2, "pending": 3}
    # B has no override and its own window: A's sends to corp.example do not count for B.
    assert settings.limit_recipient_domain_per_day >= 5
    assert _by(Recipient.status, theirs.id) == {"queued": 5}


def test_a_domain_back_off_holds_the_client_that_was_told_to_slow_down(app, factory):
    a, b = _two_clients(factory)
    _account(factory, a)
    _account(factory, b)
    until = datetime.now(UTC) + timedelta(minutes=5)
    db.session.add(DomainBackoff(client_id=a, domain="slow.example", until=until, reason="450"))
    db.session.commit()
    held = _running(factory, a, _emails(2, "slow.example", "a"))
    free = _running(factory, b, _emails(2, "slow.example", "b"))
    result = dispatch(app)
    assert result.backed_off == 2 and result.queued == 2
    assert _by(Recipient.status, held.id) == {"pending": 2}
    assert _by(Recipient.status, free.id) == {"queued": 2}


def test_a_client_paused_after_dispatch_gets_its_queued_rows_handed_back(app, factory):
    from tests.pipeline import send_batches

    a, _ = _two_clients(factory)
    _account(factory, a)
    campaign = _running(factory, a, _emails(3))
    result = dispatch(app)
    assert result.queued == 3
    db.session.execute(update(Client).where(Client.id == a).values(status="paused"))
    db.session.commit()
    [outcome] = send_batches(app, result)
    assert outcome.handed_back == 3
    db.session.expire_all()
    assert _by(Recipient.status, campaign.id) == {"pending": 3}


def test_rows_due_before_the_next_tick_compete_in_this_one(app, factory, settings):
    """A row parked until a shared limit frees a moment from now is claimed with the rows
    that were due all along, so the batch that finds the room shares it (the e2e test of a
    shared system limit showed the race)."""
    a, b = _two_clients(factory)
    _account(factory, a)
    _account(factory, b)
    soon = _running(factory, b, _emails(2, prefix="soon"))
    later = _running(factory, b, _emails(2, prefix="later"))
    now = datetime.now(UTC)
    tick = timedelta(seconds=settings.dispatch_interval_seconds)
    db.session.execute(
        update(Recipient)
        .where(Recipient.campaign_id == soon.id)
        .values(next_attempt_at=now + tick / 2)
    )
    db.session.execute(
        update(Recipient)
        .where(Recipient.campaign_id == later.id)
        .values(next_attempt_at=now + tick * 2)
    )
    db.session.commit()
    result = dispatch(app, now=now)
    assert result.claimed == 2
    assert _by(Recipient.status, soon.id) == {"queued": 2}
    assert _by(Recipient.status, later.id) == {"pending": 2}


def test_a_campaigns_priority_weighs_its_share_of_the_batch(app, factory, settings, monkeypatch):
    _account(factory, 1, daily_limit=100_000)
    urgent = _running(factory, 1, _emails(100, "gmail.com", "u"), priority=3)
    routine = _running(factory, 1, _emails(100, "gmail.com", "r"))
    monkeypatch.setitem(
        app.extensions, "settings", settings.model_copy(update={"dispatch_batch_size": 40})
    )
    assert dispatch(app).queued == 40
    assert _by(Recipient.status, urgent.id)["queued"] == 30
    assert _by(Recipient.status, routine.id)["queued"] == 10
