"""The daily summary (worker.jobs.daily_summary): the last 24 hours per account and per
campaign, accounts in trouble; one message per client to its chat and one overall to the
operator's, once a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.extensions import db
from app.models import Event
from worker import tasks
from worker.jobs import alerts, daily_summary


@pytest.fixture
def telegram_tasks(app, monkeypatch) -> list[list[str]]:
    configured = app.extensions["settings"].model_copy(
        update={"telegram_bot_token": SecretStr("1:t"), "telegram_chat_id": "-100"}
    )
    monkeypatch.setitem(app.extensions, "settings", configured)
    sent: list[list[str]] = []

    class Broker:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            sent.append(args)

    monkeypatch.setattr(alerts, "current_celery", Broker())
    return sent


def _events(kind: str, n: int, account, campaign, ago: timedelta = timedelta(hours=1)) -> None:
    at = datetime.now(UTC) - ago
    db.session.add_all(
        Event(type=kind, account_id=account.id, campaign_id=campaign.id, created_at=at)
        for _ in range(n)
    )
    db.session.commit()


@pytest.fixture
def two_clients(factory):
    acme = factory.create_client(name="Acme", telegram_chat_id="-100777")
    beta = factory.create_client(name="Beta")
    a1 = factory.create_account(name="acme-one", client_id=acme.id)
    a2 = factory.create_account(name="acme-two", client_id=acme.id)
    b1 = factory.create_account(
        name="beta-one",
        client_id=beta.id,
        status="paused",
        paused_reason="paused by the bounce guard: bounce rate 30.0 %",
        paused_by="guard",
    )
    spring = factory.create_campaign(name="Spring", client_id=acme.id, status="running")
    autumn = factory.create_campaign(name="Autumn", client_id=acme.id, status="running")
    launch = factory.create_campaign(name="Launch", client_id=beta.id, status="paused")
    _events("sent", 30, a1, spring)
    _events("bounced", 2, a1, spring)
    _events("deferred", 3, a2, spring)
    _events("sent", 10, a2, autumn)
    _events("failed", 1, a2, autumn)
    _events("sent", 20, b1, launch)
    _events("bounced", 9, b1, launch)
    _events("sent", 500, a1, spring, ago=timedelta(hours=25))  # yesterday's: left out
    return acme, beta, (a1, a2, b1), (spring, autumn, launch)


def test_counts_per_account_and_campaign_over_the_last_day(app, two_clients):
    acme, beta, (a1, a2, _), (spring, autumn, _) = two_clients
    with app.app_context():
        summaries = daily_summary.summarise(
            db.session, app.extensions["settings"], datetime.now(UTC)
        )
    by_client = {s.client_id: s for s in summaries}
    ours = by_client[acme.id]
    assert (ours.total.sent, ours.total.bounced, ours.total.deferred, ours.total.failed) == (
        40, 2, 3, 1,
    )  # fmt: skip
    assert ours.accounts[a1.id][1].sent == 30 and ours.accounts[a1.id][1].bounced == 2
    assert ours.accounts[a2.id][1].deferred == 3 and ours.accounts[a2.id][1].failed == 1
    assert ours.campaigns[spring.id][1].sent == 30 and ours.campaigns[autumn.id][1].sent == 10
    assert ours.trouble == []
    theirs = by_client[beta.id]
    assert theirs.total.sent == 20 and theirs.total.bounced == 9
    [trouble] = theirs.trouble
    assert "beta-one" in trouble and "paused by guard" in trouble and "30.0 %" in trouble


def test_an_active_account_bouncing_too_much_or_failing_health_is_in_trouble(app, factory):
    bouncy = factory.create_account(name="bouncy")
    factory.create_account(
        name="sick", last_health_ok=False, last_health_error="535 bad credentials"
    )
    campaign = factory.create_campaign(status="running")
    _events("sent", 15, bouncy, campaign)
    _events("bounced", 5, bouncy, campaign)
    with app.app_context():
        [summary] = [
            s
            for s in daily_summary.summarise(
                db.session, app.extensions["settings"], datetime.now(UTC)
            )
            if s.client_id == bouncy.client_id
        ]
    assert any("bouncy" in t and "bounced 5 of 20" in t for t in summary.trouble)
    assert any("sick" in t and "535 bad credentials" in t for t in summary.trouble)


def test_each_client_gets_its_summary_and_the_operator_an_overall_one_once_a_day(
    app, two_clients, telegram_tasks
):
    acme, beta, (a1, _, _), (spring, _, _) = two_clients
    with app.app_context():
        tasks.daily_summary()
        tasks.daily_summary()  # run twice the same day: nothing more
    by_chat: dict[str, list[str]] = {}
    for text, chat in telegram_tasks:
        by_chat.setdefault(chat, []).append(text)
    [acme_text] = by_chat["-100777"]
    assert acme_text.startswith("[Acme] Daily summary")
    assert "sent 40, bounced 2 (4.7 %), deferred 3, failed 1" in acme_text
    assert f"acme-one (#{a1.id}): sent 30, bounced 2" in acme_text
    assert f"Spring (#{spring.id}): sent 30" in acme_text
    assert "Beta" not in acme_text  # another client's figures never reach it
    operator = by_chat["-100"]
    assert len(operator) == 2  # Beta has no chat of its own: its summary, and the overall
    [beta_text] = [t for t in operator if t.startswith("[Beta]")]
    assert "Accounts in trouble:" in beta_text and "beta-one" in beta_text
    [overall] = [t for t in operator if "all clients" in t]
    assert "sent 60, bounced 11" in overall
    assert f"Acme (#{acme.id}): sent 40" in overall and f"Beta (#{beta.id}): sent 20" in overall
    assert "[Beta] beta-one" in overall


def test_long_sections_are_cut_with_a_count_of_the_rest(app, factory):
    campaign = factory.create_campaign(status="running")
    for i in range(daily_summary.MAX_LINES + 5):
        _events("sent", 1, factory.create_account(name=f"acct-{i}"), campaign)
    with app.app_context():
        summaries = daily_summary.summarise(
            db.session, app.extensions["settings"], datetime.now(UTC)
        )
        text = daily_summary.client_text(
            next(s for s in summaries if s.accounts), datetime.now(UTC)
        )
    assert "- ... and 5 more" in text and len(text) < 4000
