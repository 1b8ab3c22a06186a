"""The forecast against what a real run then does: a campaign whose forecast says N today
sends N today. The real dispatcher and send path (tests.pipeline) run against aiosmtpd
servers until a pass queues nothing, with limits small enough that a day's worth goes at
once; the limiter's windows then refuse the rest until tomorrow, as the forecast says."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from app.db import unit_of_work
from app.extensions import db
from app.models import LimitOverride, Recipient
from app.services.forecast import campaign_forecast
from rotator.limiter import Limiter
from tests.pipeline import dispatch, run_until_idle, smtp_account


def _forecast(app, campaign_id):
    with app.app_context(), unit_of_work() as session:
        return campaign_forecast(
            session,
            campaign_id,
            app.extensions["settings"],
            app.extensions["redis"],
            client_id=None,
        )


def _sent_today(campaign_id):
    db.session.expire_all()
    rows = db.session.execute(
        select(Recipient.account_id, Recipient.domain).where(
            Recipient.campaign_id == campaign_id, Recipient.status == "sent"
        )
    ).all()
    return Counter(r.account_id for r in rows), Counter(r.domain for r in rows)


def _start(campaign):
    campaign.status = "running"
    db.session.commit()


def _built_windows(app):
    # The dispatcher's limiter writes this epoch when it (re)builds the windows; the
    # forecast reads the windows only once they are built, as in a deployment.
    Limiter(app.extensions["redis"]).restore({}, epoch="forecast-test")


def _pool(factory, smtp_servers, caps):
    return [
        factory.create_account(**smtp_account(server), daily_limit=cap, per_minute_limit=100)
        for server, cap in zip(smtp_servers, caps, strict=False)
    ]


def _send_earlier(app, factory, account, n):
    """Real sends of an earlier campaign through one account: today's use of its window."""
    earlier = factory.create_running_campaign(
        [f"earlier{i}@gmail.com" for i in range(n)], account_ids=[account.id]
    )
    run_until_idle(app)
    assert _sent_today(earlier.id)[0] == {account.id: n}


def _assert_forecast_is_what_was_sent(app, campaign, forecast):
    today = forecast["days"][0]
    assert today["day"] == 0
    _start(campaign)
    run_until_idle(app, rounds=40)
    by_account, by_domain = _sent_today(campaign.id)
    assert sum(by_account.values()) == forecast["today"] == today["sends"]
    assert dict(by_account) == {e["account_id"]: e["sends"] for e in today["by_account"]}
    # The day's worth is done: the limiter gives nothing more today.
    assert dispatch(app).queued == 0
    return by_domain


def test_accounts_caps_and_todays_earlier_sends_decide_today(app, factory, smtp_servers):
    _built_windows(app)
    big, small = _pool(factory, smtp_servers, [10, 4])
    _send_earlier(app, factory, big, 2)
    campaign = factory.create_campaign(status="draft")
    factory.create_recipients(campaign, [f"p{i}@gmail.com" for i in range(30)])
    forecast = _forecast(app, campaign.id)
    assert forecast["today"] == 12
    assert forecast["days"][0]["binding"]["message"] == "the accounts' daily caps"
    assert {a["account_id"]: a["counted_today"] for a in forecast["accounts"]} == {
        big.id: 2,
        small.id: 0,
    }
    _assert_forecast_is_what_was_sent(app, campaign, forecast)
    # 30 at 14 a day from tomorrow: 12 today, 14, then 4.
    assert [d["sends"] for d in forecast["days"]] == [12, 14, 4]
    assert forecast["finish_day"] == 2


def test_a_daily_cap_splits_today_the_way_the_dispatcher_picks_accounts(app, factory, smtp_servers):
    _built_windows(app)
    big, small = _pool(factory, smtp_servers, [10, 4])
    _send_earlier(app, factory, big, 2)
    campaign = factory.create_campaign(status="draft", daily_cap=8)
    factory.create_recipients(campaign, [f"q{i}@gmail.com" for i in range(20)])
    forecast = _forecast(app, campaign.id)
    today = forecast["days"][0]
    assert today["binding"]["scope"] == "campaign"
    # Most capacity left first: big (8 left) takes 4 until both have 4, then turn about.
    assert {e["account_id"]: e["sends"] for e in today["by_account"]} == {big.id: 6, small.id: 2}
    _assert_forecast_is_what_was_sent(app, campaign, forecast)


def test_a_recipient_domain_limit_decides_today(app, factory, smtp_servers):
    _built_windows(app)
    # 7 sends: 3 even the two out, then 2 each (equal accounts take turns, from whichever
    # the dispatcher's rotation starts with, so an odd split of a tie would be a coin toss).
    first, second = _pool(factory, smtp_servers, [100, 103])
    db.session.add(
        LimitOverride(scope="recipient_domain", key="acme.example", client_id=1, per_day=3)
    )
    db.session.commit()
    campaign = factory.create_campaign(status="draft")
    emails = [f"r{i}@acme.example" for i in range(8)] + [f"s{i}@other.example" for i in range(4)]
    factory.create_recipients(campaign, emails)
    forecast = _forecast(app, campaign.id)
    assert forecast["today"] == 7
    assert forecast["days"][0]["binding"]["message"] == "acme.example is limited to 3 a day"
    acme = next(d for d in forecast["domains"] if d["domain"] == "acme.example")
    assert (
        acme["message"]
        == "acme.example is limited to 3 a day: its 8 recipients take 3 sending days"
    )
    today = forecast["days"][0]
    assert {e["account_id"]: e["sends"] for e in today["by_account"]} == {first.id: 2, second.id: 5}
    by_domain = _assert_forecast_is_what_was_sent(app, campaign, forecast)
    assert dict(by_domain) == {d["domain"]: d["sends"] for d in forecast["days"][0]["by_domain"]}
    assert forecast["finish_day"] == 2
