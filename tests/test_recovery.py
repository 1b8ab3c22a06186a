"""Recovery: lost tasks go back to pending, lost outcomes become unknown, pauses end.

These rows have no recorded holder (tasks that never started, rows of an older version), so
the age rules apply; rows with a holder are judged by its heartbeat (test_recovery_holders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.db import unit_of_work
from app.extensions import db
from app.models import Account, Event, Recipient
from rotator.limiter import Limiter
from tests.pipeline import dispatch
from worker.jobs.heartbeat import Liveness
from worker.jobs.recovery import recover


def _recover(app, now=None, settings=None):
    settings = settings or app.extensions["settings"]
    redis = app.extensions["redis"]
    with app.app_context(), unit_of_work() as session:
        return recover(
            session,
            Limiter(redis),
            Liveness(redis, settings),
            settings,
            now=now or datetime.now(UTC),
        )


def _age(status: str, column: str, seconds: int) -> None:
    db.session.execute(
        update(Recipient)
        .where(Recipient.status == status)
        .values({column: datetime.now(UTC) - timedelta(seconds=seconds)})
    )
    db.session.commit()


def test_stale_queued_rows_go_back_to_pending_and_free_their_reservation(app, factory, settings):
    account = factory.create_account(daily_limit=2, per_minute_limit=100)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example", "b@x.example", "c@x.example"])
    assert dispatch(app).queued == 2  # the day cap is now used up by reservations
    _age("queued", "queued_at", settings.queued_stale_seconds + 5)
    result = _recover(app)
    assert result.requeued == 2
    db.session.expire_all()
    rows = db.session.execute(select(Recipient).where(Recipient.status == "pending")).scalars()
    assert len(rows.all()) == 3
    assert len(db.session.execute(select(Event).where(Event.type == "requeued")).all()) == 2
    # Released: the account's day window has room again for the two that never went.
    db.session.execute(update(Recipient).values(next_attempt_at=None))
    db.session.commit()
    assert dispatch(app).queued == 2
    assert account.id in {r.account_id for r in db.session.execute(select(Recipient)).scalars()}


def test_fresh_queued_rows_are_left_alone(app, factory):
    # Recovery has known this Redis since before the dispatch (else it was lost, broker
    # and all: test_recovery_holders' broker tests).
    _recover(app)
    factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"])
    dispatch(app)
    assert _recover(app).requeued == 0


def test_stale_sending_rows_become_unknown_with_an_event_and_are_not_resent(app, factory, settings):
    factory.create_account()
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"], status="sending", message_id="<m@x>")
    _age("sending", "sending_since", settings.send_lease_seconds + 5)
    result = _recover(app)
    assert result.unknown == {campaign.id: 1}
    db.session.expire_all()
    row = db.session.execute(select(Recipient)).scalar_one()
    assert row.status == "unknown"
    event = db.session.execute(select(Event).where(Event.type == "unknown")).scalar_one()
    assert event.data["message_id"] == "<m@x>"
    assert dispatch(app).claimed == 0


def test_sending_rows_inside_their_lease_are_left_alone(app, factory):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(
        campaign, ["a@x.example"], status="sending", sending_since=datetime.now(UTC)
    )
    assert _recover(app).unknown == {}


def test_unknown_rows_raise_one_alert_per_campaign(app, factory, settings, redis_client):
    from worker.jobs.recovery import run_recovery

    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"], status="sending")
    _age("sending", "sending_since", settings.send_lease_seconds + 5)
    with app.app_context():
        run_recovery()
    assert redis_client.exists(f"sf:alert:unknown:{campaign.id}")


def test_recovery_leaves_accounts_whose_pause_is_over_to_the_health_check(app, factory):
    # They return only when their SMTP check passes (tests/test_health_resume.py).
    over = factory.create_account(
        status="paused",
        paused_until=datetime.now(UTC) - timedelta(minutes=1),
        paused_reason="3 consecutive failures",
        consecutive_failures=3,
    )
    _recover(app)
    db.session.expire_all()
    assert db.session.get(Account, over.id).status == "paused"
    assert db.session.get(Account, over.id).consecutive_failures == 3
