"""GET /api/v1/campaigns/<id>/forecast: scoped to the key's client, 404 like a missing
campaign, a draft forecast as if started now, the schedule in the OpenAPI document."""

from __future__ import annotations

from app.api.auth import create_key
from app.db import unit_of_work
from app.extensions import db
from app.models import LimitOverride
from rotator.limiter import Limiter
from tests.conftest import ApiClient


def _forecast(api, campaign_id):
    return api.get(f"/api/v1/campaigns/{campaign_id}/forecast")


def test_a_draft_campaign_is_forecast_as_if_started_now(api, factory, app):
    Limiter(app.extensions["redis"]).restore({}, epoch="t")
    account = factory.create_account(daily_limit=40)
    db.session.add(LimitOverride(scope="recipient_domain", key="acme.com", client_id=1, per_day=20))
    db.session.commit()
    campaign = factory.create_campaign(status="draft")
    factory.create_recipients(campaign, [f"a{i}@acme.com" for i in range(300)])
    response = _forecast(api, campaign.id)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "draft" and body["client_id"] == 1
    assert body["to_send"] == 300 and body["today"] == 20
    assert body["finish_day"] == 14 and not body["beyond_horizon"]
    [acme] = body["domains"]
    assert (
        acme["message"]
        == "acme.com is limited to 20 a day: its 300 recipients take 15 sending days"
    )
    assert body["days"][0]["binding"]["scope"] == "recipient_domain"
    assert body["days"][0]["by_account"] == [{"account_id": account.id, "sends": 20}]
    assert "as if it started" in body["assumptions"][0]
    assert body["summary"].startswith("300 recipients to send; 20 today")


def test_another_clients_campaign_answers_like_a_missing_one(api, factory):
    other = factory.create_client(name="bravo")
    theirs = factory.create_campaign(client_id=other.id)
    factory.create_recipients(theirs, ["x@people.example"])
    missing = _forecast(api, 999999)
    foreign = _forecast(api, theirs.id)
    assert missing.status_code == foreign.status_code == 404
    assert foreign.json["error"]["message"] == missing.json["error"]["message"].replace(
        "999999", str(theirs.id)
    )


def test_the_other_clients_key_sees_its_own(app, client, factory):
    other = factory.create_client(name="bravo")
    factory.create_account(client_id=other.id, daily_limit=5)
    theirs = factory.create_campaign(client_id=other.id)
    factory.create_recipients(theirs, [f"p{i}@gmail.com" for i in range(7)])
    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "bravo", client_id=other.id)
    body = _forecast(ApiClient(client, key), theirs.id).json
    assert body["client_id"] == other.id
    assert [d["sends"] for d in body["days"]] == [5, 2]


def test_accounts_that_will_not_send_are_listed_with_why(api, factory):
    factory.create_account(status="disabled")
    factory.create_account(status="paused", paused_reason="quota")
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@gmail.com"])
    body = _forecast(api, campaign.id).json
    assert sorted(e["reason"] for e in body["excluded_accounts"]) == ["disabled", "paused: quota"]
    assert body["beyond_horizon"] and body["finish_date"] is None
    assert body["days"][0]["binding"]["message"] == "no account can send this campaign"
    assert "beyond" in body["summary"]


def test_a_cancelled_campaign_sends_nothing_more(api, factory):
    factory.create_account()
    campaign = factory.create_campaign(status="cancelled")
    factory.create_recipients(campaign, ["a@gmail.com"])
    body = _forecast(api, campaign.id).json
    assert body["to_send"] == 0 and body["days"] == [] and body["finish_day"] == 0
    assert body["assumptions"][0] == "The campaign is cancelled: nothing more is sent."


def test_windows_lost_count_accounts_from_the_database(api, factory):
    # No epoch: Redis has lost the limiter's windows; the forecast still answers.
    factory.create_account(daily_limit=3)
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@gmail.com"])
    body = _forecast(api, campaign.id).json
    assert body["today"] == 1
    assert any("rebuilt" in note for note in body["assumptions"])


def test_the_forecast_is_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/campaigns/{campaign_id}/forecast"]["get"]
    assert "200" in operation["responses"] and "404" in operation["responses"]


def test_recipients_suppressed_since_their_import_are_not_forecast(api, factory):
    factory.create_account(daily_limit=100)
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@gmail.com", "b@gmail.com", "c@blocked.example"])
    factory.suppress("a@gmail.com")  # a bounce: every client's
    factory.suppress("blocked.example", reason="unsubscribed", client_id=1)
    other = factory.create_client(name="bravo")
    factory.suppress("b@gmail.com", reason="unsubscribed", client_id=other.id)  # not ours
    body = _forecast(api, campaign.id).json
    assert body["to_send"] == 1 and [d["domain"] for d in body["domains"]] == ["gmail.com"]
    assert body["assumptions"][0] == "2 waiting recipients are suppressed now and will not be sent."


def test_a_domain_back_off_past_today_moves_its_recipients_later(api, factory):
    from datetime import UTC, datetime, timedelta

    from app.models import DomainBackoff

    factory.create_account(daily_limit=100)
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@slow.example", "b@gmail.com"])
    until = datetime.now(UTC) + timedelta(days=2)
    db.session.add(DomainBackoff(client_id=1, domain="slow.example", until=until, reason="421"))
    db.session.commit()
    body = _forecast(api, campaign.id).json
    assert body["today"] == 1
    slow = next(
        d for d in body["days"] if d["by_domain"] == [{"domain": "slow.example", "sends": 1}]
    )
    assert slow["day"] == 2


def test_a_long_domain_list_names_the_biggest_and_counts_the_rest(api, factory):
    factory.create_account(daily_limit=1000)
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, [f"p{i}@d{i}.example" for i in range(60)])
    factory.create_recipients(campaign, [f"q{i}@d0.example" for i in range(4)])
    body = _forecast(api, campaign.id).json
    [today] = body["days"]
    assert len(today["by_domain"]) == 50 and today["by_domain"][0] == {
        "domain": "d0.example",
        "sends": 5,
    }
    assert today["other_domains"] == {"domains": 10, "sends": 10}
    assert body["domains_total"] == 60 and body["domains"][0]["domain"] == "d0.example"
