"""Limits on the wire, in process: the dispatcher places sends ahead and paces an account
across its minute (recipients.slot_at, one task per moment); the send path goes at each
row's moment, moves a late one to now when the windows allow it and hands it back when
they do not, and publishes a task that came far too early again with its ETA."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from sqlalchemy import select, text

from app.extensions import db
from app.models import Recipient
from app.services.limits import make_limiter
from rotator.limiter import Scope, Window
from tests.pipeline import dispatch, smtp_account
from worker.celery_app import celery_config
from worker.jobs import send, send_slots
from worker.jobs.send_slots import MAX_WAIT_SECONDS


@pytest.fixture
def paced(app, settings, monkeypatch):
    """The production defaults: pacing on, sends placed up to 30 s ahead."""
    live = settings.model_copy(update={"send_pacing": True, "dispatch_horizon_seconds": 30.0})
    monkeypatch.setitem(app.extensions, "settings", live)
    return live


def _rows() -> dict[str, Recipient]:
    db.session.expire_all()
    return {r.email: r for r in db.session.execute(select(Recipient)).scalars()}


def _emails(n: int) -> list[str]:
    return [f"r{i}@example.org" for i in range(n)]


def test_an_account_limited_to_10_a_minute_is_placed_every_6_seconds(app, factory, paced):
    factory.create_account(per_minute_limit=10)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(7))
    before = time.time()
    result = dispatch(app)
    # 30 s ahead holds moments 0, 6, ..., 30: six; the seventh waits for the next pass.
    assert result.queued == 6 and result.postponed == 1
    slots = sorted(r.slot_at.timestamp() for r in _rows().values() if r.status == "queued")
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == pytest.approx([6.0] * 5, abs=0.01)
    assert before - 1 <= slots[0] <= time.time() + 1
    # One task per moment, each published for its own moment.
    assert len(result.batches) == 6
    assert [b.at for b in result.batches] == pytest.approx(slots)


def test_accounts_without_pacing_share_one_task_per_group(app, factory, settings):
    factory.create_account(per_minute_limit=10)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(5))
    result = dispatch(app)
    assert result.queued == 5 and len(result.batches) == 1


def test_a_row_waits_for_its_moment_then_goes(app, factory, paced, smtp_server):
    account = factory.create_account(per_minute_limit=120, **smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(2))
    result = dispatch(app)
    slots = {r.id: r.slot_at.timestamp() for r in _rows().values()}
    assert sorted(slots.values())[1] - sorted(slots.values())[0] == pytest.approx(0.5, abs=0.01)
    # Both rows are within the group spread: one task, the second row waits half a second.
    assert len(result.batches) == 1
    with app.app_context():
        send.send_batch(account.id, result.batches[0].ids)
    received = sorted(m.received_at for m in smtp_server.received)
    assert len(received) == 2
    assert received[1] >= max(slots.values()) - 0.01
    assert {r.status for r in _rows().values()} == {"sent"}


def _late(app, factory, smtp_server, per_minute: int, seconds_late: float):
    """A queued row whose moment passed `seconds_late` ago (the queue backed up)."""
    account = factory.create_account(per_minute_limit=per_minute, **smtp_account(smtp_server))
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, _emails(1))
    result = dispatch(app)
    assert result.queued == 1
    moment = datetime.now(UTC) - timedelta(seconds=seconds_late)
    db.session.execute(text("UPDATE recipients SET slot_at = :at"), {"at": moment})
    db.session.commit()
    return account, campaign, result.batches[0].ids


def test_a_late_row_takes_its_place_now_when_the_windows_allow(app, factory, paced, smtp_server):
    account, _, ids = _late(app, factory, smtp_server, per_minute=10, seconds_late=30)
    with app.app_context():
        outcome = send.send_batch(account.id, ids)
    assert outcome.late == 0 and outcome.outcomes == {"sent": 1}
    assert len(smtp_server.received) == 1


def test_a_late_row_whose_windows_are_full_is_placed_again(
    app, factory, paced, smtp_server, redis_client
):
    account, _, ids = _late(app, factory, smtp_server, per_minute=1, seconds_late=30)
    # Another send of the same account went out since: its minute is full now.
    with app.app_context():
        limiter = make_limiter(redis_client, paced)
        # A token of its own in the account's minute window (a looser copy of it lets it in).
        assert limiter.reserve([Window(Scope.ACCOUNT, str(account.id), 60, 5)]).allowed
        outcome = send.send_batch(account.id, ids)
    assert outcome.late == 1 and outcome.handed_back == 1 and not smtp_server.received
    row = _rows()["r0@example.org"]
    assert row.status == "pending"
    assert (row.account_id, row.reservation, row.slot_at) == (None, None, None)
    # Its reservation was given back: only the other send is counted.
    assert limiter.used([Window(Scope.ACCOUNT, str(account.id), 60, 1)]) == [1]



def test_a_task_far_too_early_is_published_again_for_its_moment(
    app, factory, paced, smtp_server, redis_client, monkeypatch
):
    # A real Celery app on the test Redis, configured as the worker's (queues, routing).
    broker = Celery("sendfleet-test")
    broker.config_from_object(celery_config(paced))
    monkeypatch.setattr(send_slots, "current_celery", broker)
    account, _, ids = _late(app, factory, smtp_server, per_minute=10, seconds_late=0)
    ahead = datetime.now(UTC) + timedelta(seconds=MAX_WAIT_SECONDS + 20)
    db.session.execute(text("UPDATE recipients SET slot_at = :at"), {"at": ahead})
    db.session.commit()
    redis_client.delete("sendfleet.send")
    with app.app_context():
        outcome = send.send_batch(account.id, ids)
    assert outcome.outcomes == {} and not smtp_server.received
    row = _rows()["r0@example.org"]
    assert (row.status, row.claimed_by) == ("queued", None)
    published = [json.loads(m) for m in redis_client.lrange("sendfleet.send", 0, -1)]
    assert len(published) == 1
    headers = published[0]["headers"]
    assert headers["task"] == "sendfleet.send_batch"
    eta = datetime.fromisoformat(headers["eta"])
    assert abs((eta - ahead).total_seconds()) < 0.01

