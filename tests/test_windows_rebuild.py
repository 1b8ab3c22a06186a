"""Limiter windows rebuilt from PostgreSQL after Redis lost them: the next dispatcher pass
notices (the epoch key is gone), rebuilds under a lock from the last day's sends, and only
then reserves, so no limit is exceeded across a Redis restart or flush."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.db import unit_of_work
from app.extensions import db
from app.models import Event, LimitOverride, Recipient
from rotator.limiter import Limiter, Scope, Window
from tests.pipeline import send_batches
from worker.jobs.dispatch import dispatch_until_done
from worker.jobs.locks import RedisLock
from worker.jobs.windows_rebuild import rebuild_windows


def _dispatch(app):
    with app.app_context():
        return dispatch_until_done(
            app.extensions["redis"], app.extensions["settings"], budget_seconds=5
        )


def _sent_earlier(factory, account, n, *, hours_ago=1.0, domain="to.example", campaign=None):
    """n messages the account sent `hours_ago`, as the send path records them."""
    campaign = campaign or factory.create_campaign(status="completed")
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    rows = factory.create_recipients(
        campaign,
        [f"old{hours_ago}-{i}@{domain}" for i in range(n)],
        status="sent",
        account_id=account.id,
        sent_at=at,
    )
    db.session.add_all(
        Event(
            type="sent",
            campaign_id=campaign.id,
            recipient_id=r.id,
            account_id=account.id,
            created_at=at,
        )
        for r in rows
    )
    db.session.commit()


def _statuses(campaign_id):
    rows = db.session.execute(select(Recipient.status).where(Recipient.campaign_id == campaign_id))
    return Counter(rows.scalars())


def test_a_lost_redis_is_rebuilt_and_the_day_limit_still_holds(app, factory, redis_client):
    account = factory.create_account(daily_limit=10, per_minute_limit=1000)
    _sent_earlier(factory, account, 7)
    _sent_earlier(factory, account, 5, hours_ago=30)  # more than a day ago: counts no more
    campaign = factory.create_running_campaign([f"u{i}@gmail.com" for i in range(10)])
    redis_client.flushdb()  # a Redis restart without persistence
    result = _dispatch(app)
    assert result.rebuilt and not result.held
    assert result.queued == 3  # 10 a day, 7 already sent today
    assert _statuses(campaign.id) == {"queued": 3, "pending": 7}
    assert Limiter(redis_client).used([Window(Scope.ACCOUNT, str(account.id), 86400, 10)]) == [10]


def test_every_scope_is_rebuilt_with_the_clients_keys(app, factory, redis_client, settings):
    other = factory.create_client(name="B")
    mine = factory.create_account(per_minute_limit=1000)
    theirs = factory.create_account(client_id=other.id, per_minute_limit=1000)
    db.session.add(LimitOverride(client_id=1, scope="recipient_domain", key="corp.example",
                                 per_day=4))  # fmt: skip
    db.session.add(LimitOverride(client_id=other.id, scope="client", key=str(other.id),
                                 per_day=6))  # fmt: skip
    db.session.commit()
    _sent_earlier(factory, mine, 3, domain="corp.example")
    done = factory.create_campaign(client_id=other.id, status="completed")
    _sent_earlier(factory, theirs, 5, domain="corp.example", campaign=done)
    redis_client.flushdb()
    a = factory.create_running_campaign([f"a{i}@corp.example" for i in range(5)])
    b = factory.create_running_campaign([f"b{i}@corp.example" for i in range(5)],
                                        client_id=other.id)  # fmt: skip
    assert _dispatch(app).rebuilt
    assert _statuses(a.id)["queued"] == 1  # 4 a day to corp.example for client 1, 3 sent
    assert _statuses(b.id)["queued"] == 1  # client B's cap of 6, 5 sent
    used = Limiter(redis_client).used(
        [
            Window(Scope.RECIPIENT_DOMAIN, "1:corp.example", 86400, 4),
            Window(Scope.RECIPIENT_DOMAIN, f"{other.id}:corp.example", 86400, 20),
            Window(Scope.CLIENT, str(other.id), 86400, 6),
            Window(Scope.SENDING_DOMAIN, mine.sending_domain, 86400, 2000),
        ]
    )
    assert used == [4, 6, 6, 4]


def test_in_flight_reservations_are_rebuilt_with_their_tokens(app, factory, redis_client):
    account = factory.create_account(daily_limit=3, per_minute_limit=1000)
    campaign = factory.create_running_campaign([f"u{i}@gmail.com" for i in range(5)])
    first = _dispatch(app)
    assert first.queued == 3
    redis_client.flushdb()
    # The two that did not fit were postponed to tomorrow; make them due again.
    db.session.execute(
        Recipient.__table__.update()
        .values(next_attempt_at=None)
        .where(Recipient.campaign_id == campaign.id, Recipient.status == "pending")
    )
    db.session.commit()
    second = _dispatch(app)
    assert second.rebuilt and second.queued == 0  # the 3 queued ones still count
    # The campaign is paused before they go: handing them back frees their places.
    campaign.status = "paused"
    db.session.commit()
    [outcome] = send_batches(app, first)
    assert outcome.handed_back == 3
    window = Window(Scope.ACCOUNT, str(account.id), 86400, 3)
    assert Limiter(redis_client).used([window]) == [0]


def test_while_another_process_rebuilds_nothing_is_reserved(app, factory, redis_client):
    factory.create_account(per_minute_limit=1000)
    campaign = factory.create_running_campaign(["a@gmail.com", "b@gmail.com"])
    redis_client.flushdb()
    other = RedisLock(redis_client, "limiter-rebuild", ttl_seconds=30)
    assert other.acquire()
    held = _dispatch(app)
    assert held.held and held.queued == 0
    assert _statuses(campaign.id) == {"pending": 2}  # the claim was rolled back
    other.release()
    assert _dispatch(app).queued == 2


def test_the_rebuild_counts_each_attempt_once_and_only_within_its_window(app, factory, session):
    account = factory.create_account(per_minute_limit=1000)
    _sent_earlier(factory, account, 4, hours_ago=0.001)  # 3.6 s ago: in the minute window too
    _sent_earlier(factory, account, 2, hours_ago=2)
    limiter = Limiter(app.extensions["redis"], require_epoch=True)
    with app.app_context(), unit_of_work() as s:
        rebuilt = rebuild_windows(s, limiter, app.extensions["settings"], now=datetime.now(UTC))
    assert rebuilt.sends == 6
    minute = Window(Scope.ACCOUNT, str(account.id), 60, 1000)
    day = Window(Scope.ACCOUNT, str(account.id), 86400, 1000)
    system = Window(Scope.SYSTEM, "*", 60, 1000)
    assert limiter.used([minute, day, system]) == [4, 6, 4]
