"""Rate guards (worker.jobs.rate_guards): every threshold, on outcome events in the real
database; and inline, through the send path against real SMTP servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Campaign, Event, Recipient
from tests.pipeline import run_until_idle, smtp_account
from worker.jobs import alerts, rate_guards

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def notified(monkeypatch) -> list[tuple[str, str, int | None]]:
    sent: list[tuple[str, str, int | None]] = []

    def notify(key: str, text: str, *, client_id: int | None = None, **_: Any) -> bool:
        sent.append((key, text, client_id))
        return True

    monkeypatch.setattr(alerts, "notify", notify)
    return sent


def _outcomes(campaign, account, *, sent=0, bounced=0, failed=0, at=None) -> None:
    """Outcome events, oldest first, one second apart, ending at `at` (default NOW)."""
    kinds = ["sent"] * sent + ["bounced"] * bounced + ["failed"] * failed
    end = at or NOW
    for i, kind in enumerate(kinds):
        db.session.add(
            Event(
                type=kind,
                campaign_id=campaign.id,
                account_id=account.id,
                created_at=end - timedelta(seconds=len(kinds) - i),
            )
        )
    db.session.commit()


def _campaign(factory, **overrides) -> Campaign:
    campaign = factory.create_campaign(status="running", **overrides)
    db.session.execute(
        Campaign.__table__.update()
        .where(Campaign.id == campaign.id)
        .values(updated_at=NOW - timedelta(hours=2))
    )
    db.session.commit()
    return campaign


def _fresh(model, id_):
    db.session.expire_all()
    return db.session.get(model, id_)


def _check_campaign(app, campaign_id):
    with app.app_context():
        tripped = rate_guards.check_campaign(
            db.session, app.extensions["settings"], campaign_id, NOW
        )
        db.session.commit()
    return tripped


# --- campaigns -----------------------------------------------------------------------------


def test_a_campaign_over_10_percent_bounces_after_20_sends_is_paused_with_figures(
    app, factory, notified
):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=17, bounced=3)  # 15 % of 20
    assert _check_campaign(app, campaign.id) is not None
    paused = _fresh(Campaign, campaign.id)
    assert paused.status == "paused" and paused.paused_by == "guard"
    assert paused.pause_details["guard"] == "campaign_bounce_rate"
    assert paused.pause_details["sends"] == 20 and paused.pause_details["bounced"] == 3
    assert paused.pause_details["percent"] == 15.0
    assert "bounce rate 15.0 %" in paused.paused_reason
    event = db.session.execute(select(Event).where(Event.type == "campaign_paused")).scalar_one()
    assert event.campaign_id == campaign.id and event.data["bounced"] == 3
    assert event.client_id == campaign.client_id
    [(key, text, client_id)] = notified
    assert key == f"campaign-paused:{campaign.id}" and client_id == campaign.client_id
    assert "bounce rate 15.0 %" in text


def test_fewer_than_20_sends_never_pause_however_many_bounce(app, factory, notified):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=9, bounced=10)
    assert _check_campaign(app, campaign.id) is None
    assert _fresh(Campaign, campaign.id).status == "running"
    assert notified == []


def test_exactly_10_percent_is_not_over_the_threshold(app, factory, notified):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=18, bounced=2)
    assert _check_campaign(app, campaign.id) is None
    _outcomes(campaign, account, bounced=1)  # 3 of 21: 14 %
    assert _check_campaign(app, campaign.id).rate == "bounce"


def test_a_campaign_over_10_percent_failures_is_paused_by_the_failure_guard(app, factory, notified):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=25, failed=5)
    tripped = _check_campaign(app, campaign.id)
    assert tripped.rate == "failure"
    assert _fresh(Campaign, campaign.id).pause_details["guard"] == "campaign_failure_rate"


def test_thresholds_come_from_settings(app, factory, notified, monkeypatch):
    strict = app.extensions["settings"].model_copy(
        update={"guard_bounce_rate_percent": 2.0, "guard_min_sends": 50}
    )
    monkeypatch.setitem(app.extensions, "settings", strict)
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=45, bounced=2)  # 47 sends: under the minimum
    assert _check_campaign(app, campaign.id) is None
    _outcomes(campaign, account, sent=3)  # 2 of 50 = 4 % > 2 %
    assert _check_campaign(app, campaign.id).rates.sends == 50


def test_only_the_last_window_of_sends_counts(app, factory, notified, monkeypatch):
    small = app.extensions["settings"].model_copy(update={"guard_window_sends": 100})
    monkeypatch.setitem(app.extensions, "settings", small)
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, bounced=50, at=NOW - timedelta(minutes=10))  # long ago
    _outcomes(campaign, account, sent=100)
    assert _check_campaign(app, campaign.id) is None


def test_bounces_before_a_resume_do_not_count_again(app, factory, notified):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=20, bounced=20, at=NOW - timedelta(minutes=30))
    # Resumed by an operator 20 minutes ago (the transition moves updated_at).
    db.session.execute(
        Campaign.__table__.update()
        .where(Campaign.id == campaign.id)
        .values(updated_at=NOW - timedelta(minutes=20))
    )
    db.session.commit()
    _outcomes(campaign, account, sent=19, bounced=1)
    assert _check_campaign(app, campaign.id) is None


def test_a_paused_campaign_is_left_as_it_is(app, factory, notified):
    account = factory.create_account()
    campaign = _campaign(factory)
    _outcomes(campaign, account, sent=10, bounced=10)
    db.session.execute(
        Campaign.__table__.update().where(Campaign.id == campaign.id).values(status="paused")
    )
    db.session.commit()
    assert _check_campaign(app, campaign.id) is None
    assert notified == []


# --- accounts ------------------------------------------------------------------------------


def _check_account(app, account_id):
    with app.app_context():
        tripped = rate_guards.check_account(db.session, app.extensions["settings"], account_id, NOW)
        db.session.commit()
    return tripped


def test_an_account_bouncing_across_campaigns_is_paused_though_no_campaign_is(
    app, factory, notified
):
    account = factory.create_account()
    campaigns = [_campaign(factory) for _ in range(3)]
    for campaign in campaigns:
        _outcomes(campaign, account, sent=7, bounced=3)  # 10 sends each: under the minimum
        assert _check_campaign(app, campaign.id) is None
    assert _check_account(app, account.id).rates.bounced == 9
    paused = _fresh(Account, account.id)
    assert paused.status == "paused" and paused.paused_by == "guard"
    assert paused.pause_details["guard"] == "account_bounce_rate"
    assert paused.pause_details["sends"] == 30
    assert paused.paused_until is not None
    assert [key for key, _, _ in notified] == [f"account-paused:{account.id}"]


def test_an_account_over_the_failure_rate_is_paused(app, factory, notified):
    account = factory.create_account()
    _outcomes(_campaign(factory), account, sent=8, failed=2)
    _outcomes(_campaign(factory), account, sent=8, failed=2)
    assert _check_account(app, account.id).rate == "failure"


def test_a_campaign_the_guard_paused_does_not_count_against_its_accounts(app, factory, notified):
    account = factory.create_account()
    bad = _campaign(factory)
    _outcomes(bad, account, sent=14, bounced=7)
    assert _check_campaign(app, bad.id) is not None
    assert _check_account(app, account.id) is None
    assert _fresh(Account, account.id).status == "active"


def test_an_account_resumed_starts_a_new_window(app, factory, notified):
    account = factory.create_account()
    _outcomes(_campaign(factory), account, sent=10, bounced=10, at=NOW - timedelta(minutes=5))
    db.session.add(
        Event(type="account_resumed", account_id=account.id, created_at=NOW - timedelta(minutes=1))
    )
    db.session.commit()
    assert _check_account(app, account.id) is None


# --- sending domains -----------------------------------------------------------------------


def _check_domain(app, client_id, domain):
    with app.app_context():
        tripped = rate_guards.check_domain(
            db.session, app.extensions["settings"], client_id=client_id, domain=domain, now=NOW
        )
        db.session.commit()
    return tripped


def test_a_domain_whose_accounts_together_bounce_too_much_is_paused_as_a_whole(
    app, factory, notified
):
    ours = [
        factory.create_account(email=f"s{i}@brand.example", sending_domain="brand.example")
        for i in range(3)
    ]
    other_client = factory.create_client(name="Other")
    theirs = factory.create_account(
        email="x@brand.example", sending_domain="brand.example", client_id=other_client.id
    )
    campaign = _campaign(factory)
    for account in ours:
        _outcomes(campaign, account, sent=6, bounced=2)  # 8 each: no account is judged
        assert _check_account(app, account.id) is None
    _outcomes(_campaign(factory, client_id=other_client.id), theirs, sent=10)
    tripped = _check_domain(app, ours[0].client_id, "brand.example")
    assert tripped is not None and tripped.rates.sends == 24 and tripped.rates.bounced == 6
    for account in ours:
        paused = _fresh(Account, account.id)
        assert paused.status == "paused" and paused.paused_by == "guard"
        assert paused.pause_details["guard"] == "domain_bounce_rate"
        assert paused.pause_details["sending_domain"] == "brand.example"
    assert _fresh(Account, theirs.id).status == "active"  # another client's: untouched
    [(key, text, client_id)] = notified
    assert key == f"domain-paused:{ours[0].client_id}:brand.example"
    assert client_id == ours[0].client_id and "3 account(s)" in text


def test_a_freemail_domain_is_never_paused_as_a_whole(app, factory, notified):
    accounts = [
        factory.create_account(email=f"s{i}@gmail.com", sending_domain="gmail.com")
        for i in range(3)
    ]
    campaign = _campaign(factory)
    for account in accounts:
        _outcomes(campaign, account, sent=6, bounced=2)
    assert _check_domain(app, accounts[0].client_id, "gmail.com") is None
    assert all(_fresh(Account, a.id).status == "active" for a in accounts)


# --- inline, through the send path ---------------------------------------------------------


def _a_third_bounce(recipient: str, attempt: int) -> tuple[int, str] | None:
    # p0, p4, p8, p9 ...: a third of the list, spread over every account of the pool.
    if int(recipient.split("@")[0].removeprefix("p")) % 9 in (0, 4, 8):
        return 550, "5.1.1 The email account that you tried to reach does not exist"
    return None


def test_inline_the_campaign_pauses_once_20_sends_show_a_third_bouncing(
    app, factory, smtp_servers, notified, monkeypatch
):
    fast = app.extensions["settings"].model_copy(
        update={"limit_account_per_minute": 1000, "limit_system_per_minute": 10000}
    )
    monkeypatch.setitem(app.extensions, "settings", fast)
    for server in smtp_servers:
        factory.create_account(**smtp_account(server), daily_limit=1000)
        server.script(_a_third_bounce)
    campaign = factory.create_campaign(status="draft")
    factory.create_recipients(campaign, [f"p{i}@gmail.com" for i in range(300)])
    campaign.status = "running"
    db.session.commit()
    run_until_idle(app)
    paused = _fresh(Campaign, campaign.id)
    assert paused.status == "paused" and paused.paused_by == "guard"
    attempted = sum(len(s.received) for s in smtp_servers)
    finals = db.session.execute(
        select(Recipient.status).where(Recipient.status.in_(["sent", "bounced"]))
    ).scalars().all()  # fmt: skip
    # Paused at the first bounce once 20 outcomes are in: at most two sends later.
    assert 20 <= len(finals) <= 23
    assert attempted == finals.count("sent")
    assert paused.pause_details["sends"] >= 20
    # The bad list explains the bounces: no account left rotation for them.
    assert {a.status for a in db.session.execute(select(Account)).scalars()} == {"active"}
    assert [key for key, _, _ in notified] == [f"campaign-paused:{campaign.id}"]
