"""/api/v1/suppressions: add (idempotent), list with a filter, delete; waiting recipients
become suppressed in every campaign."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import ApiKey, Event, Recipient, Suppression


def _statuses(session):
    session.expire_all()
    return dict(session.execute(select(Recipient.email, Recipient.status)).all())


def test_an_address_is_suppressed_lower_cased(api, session):
    response = api.post("/api/v1/suppressions", json={"email": "Ana@Example.COM"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["value"], body["reason"], body["source"]) == (
        "email",
        "ana@example.com",
        "manual",
        "api",
    )


def test_a_domain_is_suppressed(api):
    response = api.post(
        "/api/v1/suppressions", json={"domain": "Spam.Example.", "reason": "complained"}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["value"], body["reason"]) == ("domain", "spam.example", "complained")


def test_an_idn_domain_is_stored_the_way_recipients_are(api, factory, session):
    campaign = factory.create_campaign()
    created = api.post(
        f"/api/v1/campaigns/{campaign.id}/recipients",
        json={"recipients": [{"email": "Ana@XN--MNCHEN-3YA.de"}]},
    )
    assert created.get_json()["imported"] == 1
    response = api.post("/api/v1/suppressions", json={"domain": "xn--mnchen-3ya.de"})
    assert response.get_json()["value"] == "münchen.de"
    assert _statuses(session) == {"ana@münchen.de": "suppressed"}
    assert api.delete("/api/v1/suppressions/M%C3%BCnchen.de").status_code == 204


def test_suppressing_twice_answers_200_with_the_existing_row(api, session):
    first = api.post("/api/v1/suppressions", json={"email": "a@b.example"})
    again = api.post("/api/v1/suppressions", json={"email": "A@b.example", "reason": "manual"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert len(session.execute(select(Suppression)).scalars().all()) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "a@b.example", "domain": "b.example"}, "domain"),
        ({"email": "not an address"}, "email"),
        ({"domain": "-bad-.example"}, "domain"),
        ({"domain": "nodot"}, "domain"),
        ({"domain": "a@b.example"}, "domain"),
        ({"email": "a@b.example", "reason": "because"}, "reason"),
        ({"email": "a@b.example", "source": "me"}, "source"),
    ],
)
def test_bad_suppressions_are_refused_naming_the_field(api, body, field):
    response = api.post("/api/v1/suppressions", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_suppressing_an_address_suppresses_its_waiting_recipients_in_every_campaign(
    api, factory, session
):
    one, two = factory.create_campaign(status="running"), factory.create_campaign()
    factory.create_recipients(one, ["ana@x.example"])
    factory.create_recipients(two, ["ana@x.example"], status="deferred")
    factory.create_recipients(one, ["bob@x.example"])
    other = factory.create_campaign()
    factory.create_recipients(other, ["ana@x.example"], status="sent")
    api.post("/api/v1/suppressions", json={"email": "ana@x.example"})

    session.expire_all()
    rows = session.execute(select(Recipient.campaign_id, Recipient.email, Recipient.status)).all()
    assert sorted(rows) == sorted(
        [
            (one.id, "ana@x.example", "suppressed"),
            (two.id, "ana@x.example", "suppressed"),
            (one.id, "bob@x.example", "pending"),
            (other.id, "ana@x.example", "sent"),
        ]
    )
    events = session.execute(select(Event.type, Event.campaign_id)).all()
    assert sorted(events) == sorted([("suppressed", one.id), ("suppressed", two.id)])
    counts = api.get(f"/api/v1/campaigns/{one.id}").get_json()["counts"]
    assert (counts["pending"], counts["suppressed"]) == (1, 1)


def test_suppressing_a_domain_leaves_messages_in_flight_to_the_send_path(api, factory, session):
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["a@spam.example", "b@spam.example"])
    factory.create_recipients(campaign, ["c@spam.example"], status="queued")
    factory.create_recipients(campaign, ["d@ok.example"])
    api.post("/api/v1/suppressions", json={"domain": "spam.example"})
    assert _statuses(session) == {
        "a@spam.example": "suppressed",
        "b@spam.example": "suppressed",
        "c@spam.example": "queued",
        "d@ok.example": "pending",
    }


def test_suppressions_are_listed_page_by_page_and_filtered(api, factory):
    for value in (
        "a@one.example",
        "b@two.example",
        "c@one.example",
        "one.example",
        "x_%@z.example",
    ):
        factory.suppress(value)
    first = api.get("/api/v1/suppressions?limit=2").get_json()
    second = api.get(f"/api/v1/suppressions?limit=2&cursor={first['next_cursor']}").get_json()
    third = api.get(f"/api/v1/suppressions?limit=2&cursor={second['next_cursor']}").get_json()
    values = [s["value"] for page in (first, second, third) for s in page["items"]]
    assert len(values) == 5 and third["next_cursor"] is None
    filtered = api.get("/api/v1/suppressions?q=ONE.example").get_json()
    assert [s["value"] for s in filtered["items"]] == [
        "a@one.example",
        "c@one.example",
        "one.example",
    ]
    literal = api.get("/api/v1/suppressions?q=_%25").get_json()  # % and _ are not wildcards
    assert [s["value"] for s in literal["items"]] == ["x_%@z.example"]


def test_a_suppression_is_deleted_by_its_value(api, admin_api, factory, session):
    factory.suppress("ana@x.example", client_id=1)
    factory.suppress("spam.example")  # global: an admin key lifts it
    assert api.delete("/api/v1/suppressions/Ana@x.example").status_code == 204
    assert admin_api.delete("/api/v1/suppressions/spam.example").status_code == 204
    session.expire_all()
    assert session.execute(select(Suppression)).scalars().all() == []


def test_deleting_what_is_not_suppressed_is_404(api):
    response = api.delete("/api/v1/suppressions/nobody@x.example")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def _deletion_events(session):
    session.expire_all()
    return [
        e.data
        for e in session.execute(select(Event).where(Event.type == "suppression_deleted"))
        .scalars()
        .all()
    ]


@pytest.mark.parametrize(
    ("reason", "client_id", "key_fixture"),
    [("unsubscribed", 1, "api"), ("complained", None, "admin_api")],
)
def test_lifting_an_opt_out_needs_confirm_and_leaves_an_event(
    request, factory, session, reason, client_id, key_fixture
):
    # An unsubscribe is the client's own; a complaint is global (an admin key lifts it).
    api = request.getfixturevalue(key_fixture)
    factory.suppress("ana@x.example", reason=reason, client_id=client_id)
    for path in (
        "/api/v1/suppressions/ana@x.example",
        "/api/v1/suppressions/ana@x.example?confirm=false",
    ):
        refused = api.delete(path)
        assert refused.status_code == 409
        error = refused.get_json()["error"]
        assert (error["code"], error["field"]) == ("confirmation_required", "confirm")
        assert "opt-out" in error["message"] and "confirm=true" in error["message"]
    session.expire_all()
    assert len(session.execute(select(Suppression)).scalars().all()) == 1
    assert _deletion_events(session) == []

    assert api.delete("/api/v1/suppressions/Ana@x.example?confirm=true").status_code == 204
    key = session.execute(select(ApiKey)).scalar_one()
    session.expire_all()
    assert session.execute(select(Suppression)).scalars().all() == []
    assert _deletion_events(session) == [
        {
            "value": "ana@x.example",
            "kind": "email",
            "reason": reason,
            "source": "test",
            "confirmed": True,
            "who": {"api_key_id": key.id, "api_key_name": key.name},
            "global": client_id is None,
        }
    ]


@pytest.mark.parametrize("reason", ["bounced", "manual"])
def test_bounced_and_manual_suppressions_go_without_confirm_but_leave_an_event(
    admin_api, factory, session, reason
):
    factory.suppress("spam.example", reason=reason)
    assert admin_api.delete("/api/v1/suppressions/spam.example").status_code == 204
    [event] = _deletion_events(session)
    assert (event["value"], event["kind"], event["reason"], event["confirmed"]) == (
        "spam.example",
        "domain",
        reason,
        False,
    )
    assert event["who"]["api_key_name"] == "admin"


def test_a_bad_confirm_value_is_refused_naming_the_field(api, factory):
    factory.suppress("ana@x.example", reason="unsubscribed")
    response = api.delete("/api/v1/suppressions/ana@x.example?confirm=maybe")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "confirm"


def test_the_openapi_document_names_the_confirm_parameter(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/suppressions/{value}"]["delete"]
    [confirm] = [p for p in operation["parameters"] if p["name"] == "confirm"]
    assert confirm["in"] == "query" and confirm["schema"]["type"] == "boolean"
    assert "409" in operation["responses"]
