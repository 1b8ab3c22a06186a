"""POST /api/v1/campaigns/<id>/start|pause|resume|cancel: the TRANSITIONS table, enforced by
one conditional UPDATE each."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidTransition
from app.extensions import db
from app.models import TRANSITIONS, Campaign, CampaignStatus, Event, Recipient
from app.services import campaigns as campaign_service


def _campaign_with_recipients(factory, status="draft"):
    campaign = factory.create_campaign(status=status)
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    return campaign


def _event_types(session, campaign_id):
    session.expire_all()
    return (
        session.execute(
            select(Event.type).where(Event.campaign_id == campaign_id).order_by(Event.id)
        )
        .scalars()
        .all()
    )


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
@pytest.mark.parametrize("status", [s.value for s in CampaignStatus])
def test_each_action_is_allowed_exactly_from_its_source_states(api, factory, action, status):
    campaign = _campaign_with_recipients(factory, status=status)
    sources, target = TRANSITIONS[action]
    response = api.post(f"/api/v1/campaigns/{campaign.id}/{action}")
    if status in sources:
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["status"] == target.value
    else:
        assert response.status_code == 409
        error = response.get_json()["error"]
        assert error["code"] == "invalid_transition"
        assert f"is {status}" in error["message"]


def test_start_runs_the_campaign_and_records_when(api, factory, session):
    campaign = _campaign_with_recipients(factory)
    body = api.post(f"/api/v1/campaigns/{campaign.id}/start").get_json()
    assert body["status"] == "running"
    assert body["started_at"] is not None
    assert body["counts"]["pending"] == 2
    assert _event_types(session, campaign.id) == ["campaign_started"]


def test_start_refuses_a_campaign_without_recipients(api, factory, session):
    campaign = factory.create_campaign()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/start")
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "no_recipients"
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == "draft"
    assert _event_types(session, campaign.id) == []


def test_pause_resume_and_cancel_each_write_an_event(api, factory, session):
    campaign = _campaign_with_recipients(factory)
    for action in ("start", "pause", "resume", "cancel"):
        assert api.post(f"/api/v1/campaigns/{campaign.id}/{action}").status_code == 200
    assert _event_types(session, campaign.id) == [
        "campaign_started",
        "campaign_paused",
        "campaign_resumed",
        "campaign_cancelled",
    ]


def test_cancel_leaves_the_recipients_as_they_are(api, factory, session):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@x.example"])
    factory.create_recipients(campaign, ["b@x.example"], status="deferred")
    factory.create_recipients(campaign, ["c@x.example"], status="sent")
    body = api.post(f"/api/v1/campaigns/{campaign.id}/cancel").get_json()
    assert body["status"] == "cancelled"
    assert (body["counts"]["pending"], body["counts"]["deferred"], body["counts"]["sent"]) == (
        1,
        1,
        1,
    )


def test_a_refused_transition_changes_nothing(api, factory, session):
    campaign = _campaign_with_recipients(factory, status="completed")
    before = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()
    assert api.post(f"/api/v1/campaigns/{campaign.id}/cancel").status_code == 409
    assert api.get(f"/api/v1/campaigns/{campaign.id}").get_json() == before
    assert _event_types(session, campaign.id) == []


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
def test_actions_on_an_unknown_campaign_are_404(api, action):
    response = api.post(f"/api/v1/campaigns/404/{action}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_two_concurrent_starts_start_the_campaign_once(app, factory):
    """Two connections: the second UPDATE waits for the first one's row lock, then finds
    the campaign running and matches nothing."""
    campaign = _campaign_with_recipients(factory)
    with app.app_context():
        engine = db.engine
    first, second = Session(engine), Session(engine)
    outcome: dict[str, object] = {}
    try:
        campaign_service.change_status(
            first, campaign.id, "start", client_id=1
        )  # holds the row lock

        def start_again() -> None:
            try:
                campaign_service.change_status(second, campaign.id, "start", client_id=1)
                outcome["second"] = "started"
            except InvalidTransition as exc:
                outcome["second"] = exc
            finally:
                second.rollback()

        thread = threading.Thread(target=start_again)
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), "the second start must wait for the first transaction"
        first.commit()
        thread.join(timeout=10)
    finally:
        first.close()
        second.close()
    assert isinstance(outcome["second"], InvalidTransition)
    assert "is running" in outcome["second"].message
    with app.app_context():
        events = (
            db.session.execute(select(Event.type).where(Event.campaign_id == campaign.id))
            .scalars()
            .all()
        )
        pending = (
            db.session.execute(select(Recipient.status).where(Recipient.campaign_id == campaign.id))
            .scalars()
            .all()
        )
    assert events == ["campaign_started"]
    assert pending == ["pending", "pending"]
