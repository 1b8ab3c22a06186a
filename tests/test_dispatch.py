"""The dispatcher: claims, suppression, account choice, limits and postponement."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg2
from sqlalchemy import select

from app.extensions import db
from app.models import Campaign, Event, LimitOverride, Recipient
from tests.pipeline import dispatch
from worker.jobs import dispatch as dispatch_module
from worker.jobs.dispatch import CLAIM_DUE
from worker.jobs.locks import RedisLock


def _fast_account(factory, **overrides):
    """An account whose per-minute window does not get in the way of day-window tests."""
    overrides.setdefault("per_minute_limit", 10_000)
    return factory.create_account(**overrides)


def _statuses(campaign_id: int) -> Counter[str]:
    rows = db.session.execute(select(Recipient.status).where(Recipient.campaign_id == campaign_id))
    return Counter(rows.scalars())


def _emails(n: int, domain: str = "gmail.com") -> list[str]:
    return [f"user{i}@{domain}" for i in range(n)]


def test_only_running_campaigns_are_dispatched(app, factory):
    factory.create_account()
    draft = factory.create_campaign(status="draft")
    running = factory.create_campaign(status="running")
    factory.create_recipients(draft, _emails(3))
    factory.create_recipients(running, _emails(3))
    result = dispatch(app)
    assert result.queued == 3
    assert _statuses(draft.id) == {"pending": 3}
    assert _statuses(running.id) == {"queued": 3}


def test_queued_rows_record_account_reservation_and_an_event(app, factory):
    account = factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(2))
    result = dispatch(app)
    assert [(b.account_id, b.ids) for b in result.batches] == [(account.id, [1, 2])]
    rows = db.session.execute(select(Recipient)).scalars().all()
    assert {r.account_id for r in rows} == {account.id}
    assert all(r.reservation and r.queued_at for r in rows)
    queued = db.session.execute(select(Event).where(Event.type == "queued")).scalars().all()
    assert sorted(e.recipient_id for e in queued) == [1, 2]


def test_suppressed_addresses_and_domains_are_dropped(app, factory):
    factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["keep@a.example", "gone@a.example", "x@blocked.example"])
    factory.suppress("gone@a.example")
    factory.suppress("blocked.example")
    result = dispatch(app)
    assert result.suppressed == 2 and result.queued == 1
    assert _statuses(campaign.id) == {"queued": 1, "suppressed": 2}


def test_equal_accounts_take_turns(app, factory):
    a = _fast_account(factory, daily_limit=100)
    b = _fast_account(factory, daily_limit=100)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(10))
    dispatch(app)
    used = Counter(db.session.execute(select(Recipient.account_id)).scalars())
    assert used == {a.id: 5, b.id: 5}


def test_account_with_more_capacity_left_is_preferred_until_they_even_out(app, factory):
    big = _fast_account(factory, daily_limit=12)
    small = _fast_account(factory, daily_limit=8)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(10))
    dispatch(app)
    used = Counter(db.session.execute(select(Recipient.account_id)).scalars())
    assert used == {big.id: 7, small.id: 3}


def test_account_day_cap_postpones_the_rest_until_its_window_frees(app, factory):
    _fast_account(factory, daily_limit=3)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(5))
    before = time.time()
    result = dispatch(app)
    assert result.queued == 3 and result.postponed == 2
    waiting = (
        db.session.execute(select(Recipient).where(Recipient.status == "pending")).scalars().all()
    )
    assert len(waiting) == 2
    for row in waiting:
        assert before + 86400 - 5 <= row.next_attempt_at.timestamp() <= time.time() + 86400 + 5


def test_postponed_rows_are_not_claimed_again_before_their_time(app, factory):
    _fast_account(factory, daily_limit=1)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(3))
    assert dispatch(app).queued == 1
    second = dispatch(app)
    assert second.claimed == 0


def test_warm_up_caps_a_new_account(app, factory, settings):
    _fast_account(factory, daily_limit=500, warmup_enabled=True, warmup_day=1)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(settings.warmup_start + 10))
    result = dispatch(app)
    assert result.queued == settings.warmup_start


def test_recipient_domain_limit_holds_across_accounts(app, factory):
    _fast_account(factory)
    _fast_account(factory)
    db.session.add(
        LimitOverride(client_id=1, scope="recipient_domain", key="corp.example", per_day=4)
    )
    db.session.commit()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(10, "corp.example") + _emails(3, "other.example"))
    result = dispatch(app)
    domains = Counter(
        db.session.execute(select(Recipient.domain).where(Recipient.status == "queued")).scalars()
    )
    assert domains == {"corp.example": 4, "other.example": 3}
    assert result.postponed == 6


def test_default_recipient_domain_limit_is_lower_than_freemail(app, factory, settings):
    _fast_account(factory, daily_limit=1000)
    campaign = factory.create_campaign(status="running")
    n = settings.limit_recipient_domain_per_day + 5
    factory.create_recipients(campaign, _emails(n, "smallcorp.example") + _emails(n, "gmail.com"))
    dispatch(app)
    domains = Counter(
        db.session.execute(select(Recipient.domain).where(Recipient.status == "queued")).scalars()
    )
    assert domains["smallcorp.example"] == settings.limit_recipient_domain_per_day
    assert domains["gmail.com"] == n


def test_sending_domain_limit_is_shared_by_its_accounts(app, factory):
    _fast_account(factory, email="a@shared.example")
    _fast_account(factory, email="b@shared.example")
    db.session.add(
        LimitOverride(client_id=1, scope="sending_domain", key="shared.example", per_day=5)
    )
    db.session.commit()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(12))
    assert dispatch(app).queued == 5


def test_campaign_daily_cap(app, factory):
    _fast_account(factory)
    campaign = factory.create_campaign(status="running", daily_cap=4)
    factory.create_recipients(campaign, _emails(9))
    assert dispatch(app).queued == 4


def test_campaign_uses_only_accounts_with_its_tags(app, factory):
    factory.create_account(tags=["cold"])
    tagged = factory.create_account(tags=["warm", "eu"])
    campaign = factory.create_campaign(status="running", account_tags=["warm"])
    factory.create_recipients(campaign, _emails(4))
    dispatch(app)
    assert set(db.session.execute(select(Recipient.account_id)).scalars()) == {tagged.id}


def test_campaign_uses_only_its_listed_accounts(app, factory):
    listed = factory.create_account()
    factory.create_account()
    campaign = factory.create_campaign(status="running", account_ids=[listed.id])
    factory.create_recipients(campaign, _emails(4))
    dispatch(app)
    assert set(db.session.execute(select(Recipient.account_id)).scalars()) == {listed.id}


def test_per_minute_limit_of_an_account_holds_and_says_when_to_come_back(app, factory, settings):
    factory.create_account(daily_limit=1000)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(15))
    before = time.time()
    result = dispatch(app)
    assert result.queued == settings.limit_account_per_minute
    waiting = (
        db.session.execute(select(Recipient).where(Recipient.status == "pending")).scalars().all()
    )
    assert len(waiting) == 15 - settings.limit_account_per_minute
    for row in waiting:
        assert before + 55 <= row.next_attempt_at.timestamp() <= time.time() + 61


def test_paused_and_unhealthy_accounts_get_nothing(app, factory):
    factory.create_account(status="paused")
    factory.create_account(last_health_ok=False)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(3))
    result = dispatch(app)
    assert result.queued == 0
    rows = db.session.execute(select(Recipient)).scalars().all()
    # Nothing can take them: they come back after a short wait, not every tick.
    assert all(r.status == "pending" and r.next_attempt_at is not None for r in rows)


def test_campaign_outside_its_sending_window_waits(app, factory):
    factory.create_account()
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # a Wednesday, 03:00 UTC
    office_hours = {"timezone": "UTC", "days": [0, 1, 2, 3, 4], "start_hour": 9, "end_hour": 17}
    campaign = factory.create_campaign(status="running", window=office_hours)
    factory.create_recipients(campaign, _emails(2))
    assert dispatch(app, now=now).claimed == 0
    assert dispatch(app, now=now.replace(hour=10)).queued == 2


def test_sending_window_respects_the_campaign_timezone(app, factory):
    factory.create_account()
    window = {"timezone": "Asia/Tokyo", "days": [2], "start_hour": 9, "end_hour": 10}
    campaign = factory.create_campaign(status="running", window=window)
    factory.create_recipients(campaign, _emails(1))
    # 00:30 UTC on Wednesday is 09:30 in Tokyo.
    assert dispatch(app, now=datetime(2026, 11, 25, 0, 30, tzinfo=UTC)).queued == 1


def test_campaign_completes_when_nothing_is_left_to_do(app, factory):
    factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"], status="sent")
    factory.create_recipients(campaign, ["b@x.example"], status="bounced")
    result = dispatch(app)
    assert result.completed_campaigns == [campaign.id]
    db.session.expire_all()
    row = db.session.get(Campaign, campaign.id)
    assert row.status == "completed" and row.completed_at is not None


def test_campaign_with_work_left_does_not_complete(app, factory):
    factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(
        campaign,
        ["a@x.example"],
        status="deferred",
        next_attempt_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert dispatch(app).completed_campaigns == []


def test_in_flight_cap_holds_back_new_claims(app, factory, settings, monkeypatch):
    _fast_account(factory)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(10))
    capped = settings.model_copy(update={"dispatch_max_in_flight": 4})
    monkeypatch.setitem(app.extensions, "settings", capped)
    assert dispatch(app).queued == 4
    assert dispatch(app).queued == 0


def test_a_nearly_full_queue_is_topped_up_in_batches_not_a_few_rows_at_a_time(
    app, factory, settings, monkeypatch
):
    """While sends are in flight, the dispatcher claims only when a quarter of a batch has
    room, so each send task carries many rows, not the handful the last sends freed."""
    _fast_account(factory)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(60))
    capped = settings.model_copy(
        update={"dispatch_max_in_flight": 40, "dispatch_batch_size": 40, "send_group_size": 50}
    )
    monkeypatch.setitem(app.extensions, "settings", capped)
    assert dispatch_module.min_top_up(capped) == 10
    assert dispatch(app).queued == 40

    def finish(n: int) -> None:
        queued = db.session.execute(
            select(Recipient).where(Recipient.status == "queued").limit(n)
        ).scalars()
        for row in queued:
            row.status = "sent"
        db.session.commit()

    finish(9)  # room for 9: not worth a batch yet
    assert dispatch(app).queued == 0
    finish(1)  # room for 10
    assert dispatch(app).queued == 10
    finish(40)
    assert dispatch(app).queued == 10  # nothing in flight: the last 10 go, however few


def test_two_connections_never_claim_the_same_rows(app, factory, database_url):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(10))
    first = psycopg2.connect(database_url)
    second = psycopg2.connect(database_url)
    sql = (
        str(CLAIM_DUE)
        .replace(":campaign_ids", "%(campaign_ids)s")
        .replace(":due_by", "%(due_by)s")
        .replace(":quotas", "%(quotas)s")
        .replace(":taken", "%(taken)s")
    )
    params = {
        "campaign_ids": [campaign.id],
        "due_by": datetime.now(UTC),
        "quotas": [6],
        "taken": [],
    }
    try:
        with first.cursor() as a, second.cursor() as b:
            a.execute(sql, params)
            b.execute(sql, params)
            mine = {r[0] for r in a.fetchall()}
            theirs = {r[0] for r in b.fetchall()}
        assert len(mine) == 6 and len(theirs) == 4
        assert not mine & theirs
    finally:
        first.rollback()
        second.rollback()
        first.close()
        second.close()


def test_only_one_dispatcher_holds_the_lock(redis_client):
    one = RedisLock(redis_client, "dispatch", ttl_seconds=10)
    two = RedisLock(redis_client, "dispatch", ttl_seconds=10)
    assert one.acquire()
    assert not two.acquire()
    two.release()  # not the holder: must not free it
    assert not two.acquire()
    one.release()
    assert two.acquire()


def test_a_campaign_receiving_recipients_is_not_completed_under_the_import(
    app, factory, database_url
):
    """An import holds its campaign's row while it adds rows; completion must not decide
    on a snapshot that misses them."""
    factory.create_account(per_minute_limit=1000)
    campaign = factory.create_campaign(status="running")
    importer = psycopg2.connect(database_url)
    try:
        with importer.cursor() as cur:
            cur.execute("SELECT id FROM campaigns WHERE id = %s FOR NO KEY UPDATE", (campaign.id,))
            cur.execute(
                "INSERT INTO recipients (campaign_id, email, domain) "
                "VALUES (%s, 'new@x.example', 'x.example')",
                (campaign.id,),
            )
        done: list[list[int]] = []
        worker = threading.Thread(target=lambda: done.append(dispatch(app).completed_campaigns))
        worker.start()
        time.sleep(0.5)
        importer.commit()
        worker.join(30)
    finally:
        importer.close()
    assert done == [[]]
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "running"
    assert dispatch(app).completed_campaigns == []
    assert _statuses(campaign.id) == {"queued": 1}


def test_a_domain_under_back_off_waits_until_it_ends_and_others_go(app, factory):
    from app.models import DomainBackoff

    _fast_account(factory)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(3, "slow.example") + _emails(2, "fine.example"))
    until = datetime.now(UTC) + timedelta(minutes=2)
    db.session.add(
        DomainBackoff(client_id=1, domain="slow.example", until=until, reason="450 4.2.0")
    )
    db.session.commit()
    result = dispatch(app)
    assert (result.queued, result.backed_off) == (2, 3)
    held = db.session.execute(select(Recipient).where(Recipient.domain == "slow.example")).scalars()
    assert {(r.status, r.next_attempt_at) for r in held} == {("pending", until)}
    assert dispatch(app).claimed == 0  # not rescanned before the back-off ends
    assert dispatch(app, now=until + timedelta(seconds=1)).queued == 3


def test_a_pass_counts_its_limiter_refusals_by_scope(app, factory, redis_client):
    from app.metrics.counters import limiter_refusals

    factory.create_account(per_minute_limit=1)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(3))
    result = dispatch(app)
    assert (result.queued, result.postponed) == (1, 2)
    assert limiter_refusals(redis_client) == {"account": 2}


def test_a_pass_holds_no_campaign_lock_a_pause_would_wait_for(
    app, factory, database_url, monkeypatch
):
    """In the middle of a pass (its claimed rows locked until it commits), pausing the
    campaign from another connection does not wait for the pass."""
    _fast_account(factory)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(5))
    paused: list[bool] = []
    real = dispatch_module._write_queued

    def pause_from_elsewhere(*args, **kwargs):
        other = psycopg2.connect(database_url)
        try:
            with other, other.cursor() as cur:
                cur.execute("SET lock_timeout = '2s'")  # a lock wait fails the test
                cur.execute("UPDATE campaigns SET status = 'paused' WHERE id = %s", (campaign.id,))
                paused.append(True)
        finally:
            other.close()
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch_module, "_write_queued", pause_from_elsewhere)
    result = dispatch(app)
    assert paused == [True] and result.queued == 5
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "paused"
