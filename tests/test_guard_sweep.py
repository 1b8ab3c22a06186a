"""The every-minute guards task (worker.jobs.guard_sweep): rates the inline check could not
see, the 80 % capacity alert once per account per day, and an alert per resume. Alerts go
through the real notify (Redis dedup) to a captured broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.extensions import db
from app.models import Account, Campaign, Event
from worker import tasks
from worker.jobs import alerts, guard_sweep


@pytest.fixture
def telegram_tasks(app, monkeypatch) -> list[list[str]]:
    """Telegram configured; the tasks notify enqueues, captured instead of a broker."""
    configured = app.extensions["settings"].model_copy(
        update={"telegram_bot_token": SecretStr("1:t"), "telegram_chat_id": "-100"}
    )
    monkeypatch.setitem(app.extensions, "settings", configured)
    sent: list[list[str]] = []

    class Broker:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            assert name == "sendfleet.telegram"
            sent.append(args)

    monkeypatch.setattr(alerts, "current_celery", Broker())
    return sent


def _events(kind: str, n: int, *, account_id: int, campaign_id: int | None = None, ago=None):
    at = datetime.now(UTC) - (ago or timedelta(seconds=30))
    for i in range(n):
        db.session.add(
            Event(
                type=kind,
                account_id=account_id,
                campaign_id=campaign_id,
                created_at=at + timedelta(milliseconds=i),
            )
        )
    db.session.commit()


def _running(factory) -> Campaign:
    campaign = factory.create_campaign(status="running")
    db.session.execute(
        Campaign.__table__.update()
        .where(Campaign.id == campaign.id)
        .values(updated_at=datetime.now(UTC) - timedelta(hours=1))
    )
    db.session.commit()
    return campaign


def _run(app) -> guard_sweep.SweepResult:
    with app.app_context():
        return guard_sweep.run_guards()


def test_the_task_pauses_a_campaign_whose_outcomes_no_inline_check_judged(
    app, factory, telegram_tasks
):
    account = factory.create_account()
    campaign = _running(factory)
    _events("sent", 16, account_id=account.id, campaign_id=campaign.id)
    _events("bounced", 4, account_id=account.id, campaign_id=campaign.id)
    with app.app_context():
        tasks.guards()  # the shim beat calls
    db.session.expire_all()
    paused = db.session.get(Campaign, campaign.id)
    assert paused.status == "paused" and paused.pause_details["bounced"] == 4
    assert db.session.get(Account, account.id).status == "active"  # explained by the list
    assert [text for text, _ in telegram_tasks if f"Campaign {campaign.id}" in text]


def test_the_task_pauses_an_account_and_a_domain_from_recent_refusals(app, factory, telegram_tasks):
    alone = factory.create_account()
    pair = [
        factory.create_account(email=f"s{i}@pair.example", sending_domain="pair.example")
        for i in range(2)
    ]
    for _ in range(2):  # two campaigns of 10 each: no campaign reaches the minimum
        campaign = _running(factory)
        _events("sent", 7, account_id=alone.id, campaign_id=campaign.id)
        _events("failed", 3, account_id=alone.id, campaign_id=campaign.id)
    for account in pair:
        campaign = _running(factory)
        _events("sent", 8, account_id=account.id, campaign_id=campaign.id)
        _events("bounced", 4, account_id=account.id, campaign_id=campaign.id)
    result = _run(app)
    assert result.campaigns_paused == []
    assert result.accounts_paused == [alone.id]
    assert result.domains_paused == [f"{pair[0].client_id}:pair.example"]
    db.session.expire_all()
    assert {db.session.get(Account, a.id).paused_by for a in [alone, *pair]} == {"guard"}


def test_refusals_older_than_the_lookback_are_not_rescanned(app, factory, telegram_tasks):
    account = factory.create_account()
    campaign = _running(factory)
    old = guard_sweep.SWEEP_LOOKBACK + timedelta(minutes=1)
    _events("bounced", 20, account_id=account.id, campaign_id=campaign.id, ago=old)
    assert _run(app).campaigns_paused == []


def test_an_account_at_80_percent_of_its_cap_alerts_once_a_day(app, factory, telegram_tasks):
    busy = factory.create_account(daily_limit=50)
    quiet = factory.create_account(daily_limit=50)
    _events("sent", 40, account_id=busy.id)  # 80 % of 50
    _events("sent", 39, account_id=quiet.id)  # 78 %
    assert _run(app).cap_alerts == [busy.id]
    assert _run(app).cap_alerts == []  # a minute later: already told today
    [(text, chat)] = [t for t in telegram_tasks if "sends today" in t[0]]
    assert f"Account {busy.id}" in text and "40 of its 50" in text and chat == "-100"
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with app.app_context():
        result = guard_sweep.SweepResult()
        guard_sweep.alert_capacity(
            db.session, app.extensions["settings"], app.extensions["redis"], tomorrow, result
        )
    assert result.cap_alerts == [busy.id]  # a new day: told again


def test_paused_accounts_get_no_capacity_alert(app, factory, telegram_tasks):
    paused = factory.create_account(daily_limit=10, status="paused")
    _events("sent", 10, account_id=paused.id)
    assert _run(app).cap_alerts == []


def test_each_resume_alerts_once_whoever_resumed(app, factory, telegram_tasks):
    client = factory.create_client(name="Acme", telegram_chat_id="-100777")
    account = factory.create_account(client_id=client.id)
    db.session.add(
        Event(type="account_resumed", account_id=account.id, data={"reason": "pause over"})
    )
    db.session.commit()
    assert _run(app).resume_alerts == [account.id]
    assert _run(app).resume_alerts == []
    [(text, chat)] = [t for t in telegram_tasks if "back in rotation" in t[0]]
    assert text.startswith("[Acme] Account") and "pause over" in text and chat == "-100777"


def test_a_resume_the_health_check_announced_is_not_announced_again(app, factory, telegram_tasks):
    account = factory.create_account()
    with app.app_context():  # the health check's own alert (worker.jobs.health)
        alerts.notify(f"account-resumed:{account.id}", "back: its health check passed")
    db.session.add(Event(type="account_resumed", account_id=account.id, data={}))
    db.session.commit()
    assert _run(app).resume_alerts == []
    assert len(telegram_tasks) == 1
