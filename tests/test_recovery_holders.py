"""Recovery judges a held row by its holder's heartbeat, never by its age: a dead holder's
rows come back at once, a live holder's send is never called lost, and a Redis that lost
its data (every heartbeat gone at once) is not taken for the death of every worker.

Real PostgreSQL and Redis; the heartbeat timings are shortened so that a test sees several
TTLs pass in about a second."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.extensions import db
from app.models import Event, Recipient
from app.settings import Settings
from tests.pipeline import dispatch
from tests.test_recovery import _recover
from worker.jobs.heartbeat import SUSPECTS_KEY, Heartbeat, heartbeat_key

LIVE = "worker-a:101:live"
DEAD = "worker-b:202:dead"
LONG_AGO = timedelta(days=2)


@pytest.fixture
def fast(settings_env) -> Settings:
    """Heartbeat every 0.1 s, TTL 0.3 s: a missing key is confirmed 0.2 s after first seen."""
    values = {k.lower(): v for k, v in settings_env.items()}
    return Settings(**values, heartbeat_interval_seconds=0.1, heartbeat_ttl_seconds=0.3)  # type: ignore[arg-type]


def _statuses() -> dict[str, str]:
    db.session.rollback()
    return {r.email: r.status for r in db.session.execute(select(Recipient)).scalars()}


def _hold(holder: str, status: str, since: datetime) -> None:
    column = "queued_at" if status == "queued" else "sending_since"
    db.session.execute(
        update(Recipient)
        .where(Recipient.status == status)
        .values(claimed_by=holder, **{column: since})
    )
    db.session.commit()


def _passes(app, settings: Settings, seconds: float, beat: Heartbeat | None = None) -> list:
    """Recovery passes every 50 ms for `seconds` (a live holder beats in between)."""
    results = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if beat is not None:
            beat.beat()
        results.append(_recover(app, settings=settings))
        time.sleep(0.05)
    return results


def _trusted_epoch(app, settings: Settings) -> None:
    """Recovery has known this Redis for longer than one TTL (steady state)."""
    _recover(app, settings=settings)
    time.sleep(settings.heartbeat_ttl_seconds + 0.05)


def test_a_live_holders_send_is_never_unknown_however_old(app, factory, fast, redis_client):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["slow@x.example"], status="sending")
    _hold(LIVE, "sending", datetime.now(UTC) - LONG_AGO)  # far past any lease
    beat = Heartbeat(redis_client, LIVE, interval=0.1, ttl=0.3)
    beat.start()
    try:
        _trusted_epoch(app, fast)
        results = _passes(app, fast, 1.0)  # more than three TTLs
    finally:
        beat.stop()
    assert _statuses() == {"slow@x.example": "sending"}
    assert all(r.unknown == {} and r.dead_holders == [] for r in results)
    assert results[-1].overdue == 1  # said, not acted on


def test_a_dead_holders_rows_are_recovered_without_waiting_for_a_lease(
    app, factory, fast, settings
):
    factory.create_account(daily_limit=3, per_minute_limit=100)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["q1@x.example", "q2@x.example"])
    assert dispatch(app).queued == 2  # reserved: the day cap has room for one more
    factory.create_recipients(campaign, ["s@x.example"], status="sending", message_id="<s@x>")
    now = datetime.now(UTC)
    _hold(DEAD, "queued", now)  # fresh: the age rules would leave them for minutes
    _hold(DEAD, "sending", now)
    _trusted_epoch(app, fast)

    started = time.monotonic()
    first = _recover(app, settings=fast)
    assert first.dead_holders == [] and first.requeued == 0  # missing once: a suspect
    while not _recover(app, settings=fast).dead_holders:
        assert time.monotonic() - started < 2, "a dead holder was never confirmed"
        time.sleep(0.05)

    assert _statuses() == {
        "q1@x.example": "pending",
        "q2@x.example": "pending",
        "s@x.example": "unknown",
    }
    assert time.monotonic() - started < 2 < settings.queued_stale_seconds
    reasons = {
        (e.type, e.data["reason"], e.data.get("holder"))
        for e in db.session.execute(
            select(Event).where(Event.type.in_(["requeued", "unknown"]))
        ).scalars()
    }
    assert reasons == {("requeued", "holder gone", DEAD), ("unknown", "holder gone", DEAD)}
    held = db.session.execute(select(Recipient.claimed_by).where(Recipient.status == "pending"))
    assert set(held.scalars()) == {None}
    # The reservations were released: the day cap (3) has room for both again.
    db.session.execute(update(Recipient).values(next_attempt_at=None))
    db.session.commit()
    assert dispatch(app).queued == 2


def test_a_redis_that_lost_its_data_does_not_turn_live_sends_unknown(
    app, factory, fast, redis_client
):
    """Every heartbeat gone at once while every worker lives (FLUSHALL, or a restart, after
    which each worker's first beat fails on its dead connection and the next one lands):
    the keys come back within one TTL, and nothing is judged before they could."""
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["live@x.example"], status="sending")
    _hold(LIVE, "sending", datetime.now(UTC) - LONG_AGO)
    beat = Heartbeat(redis_client, LIVE, interval=0.1, ttl=0.3)  # beaten by hand below
    beat.beat()
    _trusted_epoch(app, fast)
    beat.beat()
    assert _recover(app, settings=fast).unknown == {}
    redis_client.flushdb()
    results = _passes(app, fast, 0.25)  # the worker's beat is late (reconnecting)
    results += _passes(app, fast, 1.0, beat=beat)  # and back to its rhythm
    assert all(r.unknown == {} and r.dead_holders == [] for r in results)
    assert _statuses() == {"live@x.example": "sending"}


def test_after_a_flush_a_dead_holder_is_still_recovered_one_ttl_later(
    app, factory, fast, redis_client
):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["gone@x.example"], status="sending")
    _hold(DEAD, "sending", datetime.now(UTC))
    _trusted_epoch(app, fast)
    redis_client.flushdb()
    flushed = time.monotonic()
    while _statuses()["gone@x.example"] == "sending":
        _recover(app, settings=fast)
        assert time.monotonic() - flushed < 3, "never recovered after the flush"
        time.sleep(0.05)
    # Not before the grace of one TTL plus the confirmation of a second pass.
    assert time.monotonic() - flushed >= fast.heartbeat_ttl_seconds
    assert _statuses() == {"gone@x.example": "unknown"}


def test_a_heartbeat_missing_once_is_a_suspect_not_a_death(app, factory, fast, redis_client):
    """An evicted key, or one refresh lost to a network blip, while the process lives."""
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["busy@x.example"], status="sending")
    _hold(LIVE, "sending", datetime.now(UTC) - LONG_AGO)
    beat = Heartbeat(redis_client, LIVE, interval=0.1, ttl=0.3)  # beaten by hand below
    beat.beat()
    _trusted_epoch(app, fast)
    beat.beat()
    redis_client.delete(heartbeat_key(LIVE))
    assert _recover(app, settings=fast).unknown == {}
    assert redis_client.hexists(SUSPECTS_KEY, LIVE)
    beat.beat()  # the live process's next beat
    time.sleep(0.25)  # longer than the confirmation gap (two intervals)
    beat.beat()
    assert _recover(app, settings=fast).unknown == {}
    assert not redis_client.hexists(SUSPECTS_KEY, LIVE)
    assert _statuses() == {"busy@x.example": "sending"}


def test_rows_without_a_holder_keep_the_age_rules(app, factory, fast, settings):
    """Written by an older version (sending) or never started (queued, task in the broker)."""
    _trusted_epoch(app, fast)  # a Redis recovery knows: its broker still holds the task
    campaign = factory.create_campaign(status="running")
    now = datetime.now(UTC)
    factory.create_recipients(
        campaign,
        ["old@x.example"],
        status="sending",
        sending_since=now - timedelta(seconds=settings.send_lease_seconds + 5),
    )
    factory.create_recipients(campaign, ["new@x.example"], status="sending", sending_since=now)
    factory.create_recipients(campaign, ["waiting@x.example"], status="queued", queued_at=now)
    _passes(app, fast, 0.5)
    assert _statuses() == {
        "old@x.example": "unknown",
        "new@x.example": "sending",
        "waiting@x.example": "queued",
    }


def test_when_redis_the_broker_lost_its_data_unstarted_rows_go_back_at_once(
    app, factory, fast, redis_client
):
    _trusted_epoch(app, fast)
    campaign = factory.create_campaign(status="running")
    now = datetime.now(UTC)
    factory.create_recipients(campaign, ["lost@x.example"], status="queued", queued_at=now)
    assert _recover(app, settings=fast).requeued == 0  # its task is in the broker
    redis_client.flushall()  # and now it is not
    result = _recover(app, settings=fast)
    assert result.broker_lost and result.requeued == 1
    assert _statuses() == {"lost@x.example": "pending"}


def test_a_broker_elsewhere_keeps_its_tasks_when_redis_loses_its_data(
    app, factory, fast, redis_client
):
    elsewhere = fast.model_copy(update={"celery_broker_url": "amqp://guest@127.0.0.1:5672//"})
    _trusted_epoch(app, elsewhere)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(
        campaign, ["kept@x.example"], status="queued", queued_at=datetime.now(UTC)
    )
    redis_client.flushall()
    result = _recover(app, settings=elsewhere)
    assert not result.broker_lost and result.requeued == 0
    assert _statuses() == {"kept@x.example": "queued"}


def test_the_heartbeat_thread_beats_while_the_process_is_busy(redis_client):
    beat = Heartbeat(redis_client, LIVE, interval=0.1, ttl=0.3)
    beat.start()
    try:
        seen = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # a CPU-bound task loop that never yields
            sum(i * i for i in range(20000))
            seen.append(bool(redis_client.exists(heartbeat_key(LIVE))))
    finally:
        beat.stop()
    assert len(seen) > 5 and all(seen)
    assert not redis_client.exists(heartbeat_key(LIVE))  # a clean exit removes it
