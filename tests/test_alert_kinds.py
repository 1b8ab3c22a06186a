"""Every alert kind reaches Telegram's task with the client named and in its own chat,
and every automatic pause records who paused it and the figures (paused_by,
pause_details), shown by the API. Real SMTP servers, the real send path and notify; only
the broker is captured (delivery is the task's job, tests/test_telegram_delivery.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from app.extensions import db
from app.models import Account, Campaign
from tests.pipeline import run_until_idle, smtp_account
from tests.smtp_server import ScriptedSMTPServer
from worker.jobs import alerts

UNAUTHENTICATED = (
    "5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail "
    "users, and has been blocked. The sender must authenticate with at least one of SPF or DKIM."
)


@pytest.fixture
def acme(factory):
    return factory.create_client(name="Acme", telegram_chat_id="-100777")


@pytest.fixture
def telegram_tasks(app, monkeypatch) -> list[tuple[str, str]]:
    configured = app.extensions["settings"].model_copy(
        update={"telegram_bot_token": SecretStr("1:t"), "telegram_chat_id": "-100"}
    )
    monkeypatch.setitem(app.extensions, "settings", configured)
    sent: list[tuple[str, str]] = []

    class Broker:
        def send_task(self, name: str, args: list[str], queue: str) -> None:
            assert name == "sendfleet.telegram" and queue == alerts.ALERT_QUEUE
            sent.append((args[0], args[1]))

    monkeypatch.setattr(alerts, "current_celery", Broker())
    return sent


def _running(factory, acme, emails):
    campaign = factory.create_campaign(status="draft", client_id=acme.id)
    factory.create_recipients(campaign, emails)
    campaign.status = "running"
    db.session.commit()
    return campaign


def _account(account_id: int) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account_id)


def _only(sent: list[tuple[str, str]], needle: str) -> tuple[str, str]:
    [found] = [item for item in sent if needle in item[0]]
    return found


def test_an_authentication_failure_disables_the_account_and_alerts(
    app, factory, acme, telegram_tasks
):
    with ScriptedSMTPServer(auth=("user", "right")) as locked:
        account = factory.create_account(
            **smtp_account(locked), username="user", password="wrong", client_id=acme.id
        )
        _running(factory, acme, ["a@example.org"])
        run_until_idle(app)
    row = _account(account.id)
    assert row.status == "disabled" and row.paused_by == "refusal"
    assert row.pause_details["smtp_code"] == 535
    text, chat = _only(telegram_tasks, f"Account {account.id} disabled")
    assert text.startswith("[Acme] ") and chat == "-100777"


def test_consecutive_failures_pause_the_account_with_their_count(
    app, factory, acme, telegram_tasks, smtp_server
):
    account = factory.create_account(**smtp_account(smtp_server), client_id=acme.id)
    smtp_server.fail_mail(451, "4.3.0 Temporary server error")
    _running(factory, acme, [f"u{i}@example.org" for i in range(5)])
    run_until_idle(app)
    row = _account(account.id)
    assert row.status == "paused" and row.paused_by == "failures"
    assert row.pause_details["consecutive_failures"] == 3
    assert row.pause_details["threshold"] == 3
    text, chat = _only(telegram_tasks, f"Account {account.id} paused")
    assert "consecutive failures" in text and chat == "-100777"


def test_receivers_refusing_the_domains_authentication_pause_it_as_a_whole(
    app, factory, acme, telegram_tasks, smtp_servers
):
    refusing, sibling_server, _ = smtp_servers
    refused = factory.create_account(
        **smtp_account(refusing), email="one@brand.example", client_id=acme.id
    )
    sibling = factory.create_account(
        **smtp_account(sibling_server), email="two@brand.example", client_id=acme.id,
        daily_limit=1,
    )  # fmt: skip
    refusing.fail_all(550, UNAUTHENTICATED)
    _running(factory, acme, ["a@example.org", "b@example.org"])
    run_until_idle(app)
    for account in (refused, sibling):
        row = _account(account.id)
        assert row.status == "paused" and row.paused_by == "sender_auth"
        assert row.pause_details["sending_domain"] == "brand.example"
        assert row.pause_details["whole_domain"] is True
    text, chat = _only(telegram_tasks, "sending domain brand.example failed")
    assert "Fix:" in text and chat == "-100777"


def test_a_guard_pause_is_shown_by_the_api_and_an_operator_pause_says_operator(
    app, api, factory, smtp_servers, telegram_tasks, monkeypatch
):
    fast = app.extensions["settings"].model_copy(update={"limit_account_per_minute": 1000})
    monkeypatch.setitem(app.extensions, "settings", fast)
    account = factory.create_account(**smtp_account(smtp_servers[0]))
    for i in range(0, 60, 3):  # gmail.com: freemail, its daily limit is no obstacle
        smtp_servers[0].fail_rcpt(f"u{i}@gmail.com", 550, "5.1.1 User unknown")
    campaign = factory.create_campaign(status="draft")
    factory.create_recipients(campaign, [f"u{i}@gmail.com" for i in range(60)])
    campaign.status = "running"
    db.session.commit()
    run_until_idle(app)
    shown = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()
    assert shown["status"] == "paused" and shown["paused_by"] == "guard"
    assert shown["pause_details"]["guard"] == "campaign_bounce_rate"
    assert shown["pause_details"]["threshold_percent"] == 10
    resumed = api.post(f"/api/v1/campaigns/{campaign.id}/resume").get_json()
    assert resumed["paused_by"] is None and resumed["pause_details"] is None
    paused = api.post(f"/api/v1/campaigns/{campaign.id}/pause").get_json()
    assert paused["paused_by"] == "operator"
    shown_account = api.get(f"/api/v1/accounts/{account.id}").get_json()
    assert shown_account["paused_by"] is None and shown_account["status"] == "active"
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    by_hand = api.post(f"/api/v1/accounts/{account.id}/pause", json={"until": until})
    assert by_hand.get_json()["paused_by"] == "operator"
    assert api.post(f"/api/v1/accounts/{account.id}/resume").get_json()["paused_by"] is None
    _only(telegram_tasks, f"Campaign {campaign.id} ")


def test_unknown_recipients_after_a_crash_alert_the_client(
    app, factory, acme, telegram_tasks, settings
):
    from worker.jobs.recovery import run_recovery

    campaign = factory.create_campaign(status="running", client_id=acme.id)
    factory.create_recipients(
        campaign,
        ["a@x.example", "b@x.example"],
        status="sending",
        sending_since=datetime.now(UTC) - timedelta(seconds=settings.send_lease_seconds + 5),
    )
    with app.app_context():
        run_recovery()
    text, chat = _only(telegram_tasks, f"Campaign {campaign.id}: 2 send(s) lost their outcome")
    assert text.startswith("[Acme] ") and chat == "-100777"


def test_a_campaign_paused_by_the_content_guard_records_it(
    app, factory, acme, telegram_tasks, smtp_server
):
    factory.create_account(**smtp_account(smtp_server), client_id=acme.id)
    smtp_server.fail_all(554, "5.7.1 Message rejected: content policy violation")
    campaign = _running(factory, acme, [f"u{i}@example.org" for i in range(8)])
    run_until_idle(app)
    db.session.expire_all()
    row = db.session.get(Campaign, campaign.id)
    assert row.status == "paused" and row.paused_by == "guard"
    assert row.pause_details["guard"] == "content" and row.pause_details["refusals"] >= 5
    _only(telegram_tasks, f"Campaign {campaign.id} ")
