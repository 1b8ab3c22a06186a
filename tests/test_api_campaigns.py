"""POST/GET /api/v1/campaigns: JSON and CSV creation in one transaction, template checks,
selection and window, counts."""

from __future__ import annotations

import io
import json

from sqlalchemy import event, func, select

from app.extensions import db
from app.models import Campaign, Recipient, RecipientStatus

CAMPAIGN = {
    "name": "Spring launch",
    "subject": "Hello {{ first_name }}",
    "body_text": "Hi {{ first_name }}, {{ company | default('friend') }}",
}
CSV = (
    b"email,First Name,Company\n"
    b"ana@example.com,Ana,Acme\n"
    b"bob@example.com,Bob,\n"
    b"not-an-address,X,Y\n"
)


def _counts(session):
    session.expire_all()
    return (
        session.execute(select(func.count()).select_from(Campaign)).scalar_one(),
        session.execute(select(func.count()).select_from(Recipient)).scalar_one(),
    )


def _upload(api, path, csv=CSV, **form):
    data = {**form, "file": (io.BytesIO(csv), "list.csv")}
    return api.post(path, data=data, content_type="multipart/form-data")


def test_a_campaign_is_created_from_json_with_its_recipients(api, factory, session):
    factory.suppress("blocked@example.com")
    recipients = [
        {"email": "Ana@Example.com", "first_name": "Ana"},
        {"email": "bob@example.com", "first_name": "Bob", "score": 7},
        {"email": "ana@example.com", "first_name": "Again"},
        {"email": "blocked@example.com", "first_name": "B"},
        {"email": "nope", "first_name": "N"},
    ]
    response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "recipients": recipients})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["imported"] == 2
    assert body["rejected"] == {"invalid": 1, "duplicate": 1, "suppressed": 1}
    assert {e["row"] for e in body["errors"]} == {3, 4, 5}
    assert set(body) == {"id", "imported", "rejected", "errors", "warnings"}

    campaign = api.get(f"/api/v1/campaigns/{body['id']}").get_json()
    assert campaign["status"] == "draft"
    assert campaign["counts"]["pending"] == 2
    assert campaign["field_names"] == ["first_name", "score"]


def test_a_campaign_is_created_from_a_csv_upload_with_form_fields(api, factory):
    tagged = factory.create_account(tags=["eu"])
    window = {"timezone": "Europe/Berlin", "days": [4, 0, 1], "start_hour": 9, "end_hour": 17}
    response = _upload(
        api,
        "/api/v1/campaigns",
        **CAMPAIGN,
        from_name="Ana at Acme",
        account_tags="eu, us",
        window=json.dumps(window),
        daily_cap="250",
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["imported"] == 2
    assert body["rejected"]["invalid"] == 1
    assert body["errors"][0]["email"] == "not-an-address"

    campaign = api.get(f"/api/v1/campaigns/{body['id']}").get_json()
    assert campaign["account_tags"] == ["eu", "us"]
    assert campaign["account_ids"] is None
    assert campaign["window"] == {**window, "days": [0, 1, 4]}
    assert campaign["daily_cap"] == 250
    assert campaign["from_name"] == "Ana at Acme"
    assert campaign["field_names"] == ["company", "first_name"]
    assert tagged.id  # the tag need not match an account at creation


def test_account_ids_may_be_repeated_form_fields(api, factory):
    a, b = factory.create_account(), factory.create_account()
    response = api.post(
        "/api/v1/campaigns",
        data={
            **CAMPAIGN,
            "account_ids": [str(a.id), str(b.id)],
            "file": (io.BytesIO(CSV), "list.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    campaign = api.get(f"/api/v1/campaigns/{response.get_json()['id']}").get_json()
    assert campaign["account_ids"] == [a.id, b.id]


def test_a_campaign_may_be_created_without_recipients(api):
    plain = {**CAMPAIGN, "subject": "Hello", "body_text": "Hi {{ first_name | default('') }}"}
    response = api.post("/api/v1/campaigns", json=plain)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["imported"] == 0
    undefined = api.post("/api/v1/campaigns", json={**CAMPAIGN, "recipients": []})
    assert undefined.status_code == 422
    assert undefined.get_json()["error"]["field"] == "subject"


def test_a_template_syntax_error_names_the_field_and_stores_nothing(api, session):
    response = api.post(
        "/api/v1/campaigns",
        json={
            **CAMPAIGN,
            "body_text": "Hi {{ first_name ",
            "recipients": [{"email": "a@b.example"}],
        },
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "body_text"
    assert error["code"] == "template"
    assert _counts(session) == (0, 0)


def test_an_undefined_variable_is_refused_at_creation_and_stores_nothing(api, session):
    response = api.post(
        "/api/v1/campaigns",
        json={**CAMPAIGN, "recipients": [{"email": "a@b.example", "last_name": "Doe"}]},
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "subject"
    assert "first_name" in error["message"]
    assert _counts(session) == (0, 0)


def test_an_undefined_variable_in_the_html_body_is_refused_too(api, session):
    response = _upload(
        api, "/api/v1/campaigns", **CAMPAIGN, body_html="<p>{{ first_name }} {{ city }}</p>"
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "body_html"
    assert "city" in response.get_json()["error"]["message"]
    assert _counts(session) == (0, 0)


def test_a_bad_csv_leaves_nothing_behind(api, session):
    response = _upload(api, "/api/v1/campaigns", csv=b"name,company\nAna,Acme\n", **CAMPAIGN)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "file"
    assert _counts(session) == (0, 0)


def test_unknown_account_ids_are_refused(api, factory, session):
    known = factory.create_account()
    response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "account_ids": [known.id, 999]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "account_ids"
    assert "999" in error["message"]
    assert _counts(session) == (0, 0)


def test_account_tags_and_account_ids_exclude_each_other(api, factory):
    known = factory.create_account()
    response = api.post(
        "/api/v1/campaigns", json={**CAMPAIGN, "account_tags": ["eu"], "account_ids": [known.id]}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "account_ids"


def test_the_window_is_validated(api):
    cases = [
        (
            {"timezone": "Mars/Olympus", "days": [0], "start_hour": 9, "end_hour": 17},
            "window.timezone",
        ),
        ({"timezone": "UTC", "days": [7], "start_hour": 9, "end_hour": 17}, "window.days.0"),
        ({"timezone": "UTC", "days": [], "start_hour": 9, "end_hour": 17}, "window.days"),
        ({"timezone": "UTC", "days": [1], "start_hour": 17, "end_hour": 9}, "window.end_hour"),
        ({"timezone": "UTC", "days": [1], "start_hour": 0, "end_hour": 25}, "window.end_hour"),
        ({"timezone": "UTC", "days": [1], "start_hour": 9}, "window.end_hour"),
        (
            {"timezone": "../../etc/passwd", "days": [1], "start_hour": 9, "end_hour": 10},
            "window.timezone",
        ),
    ]
    for window, field in cases:
        response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "window": window})
        assert response.status_code == 422, window
        assert response.get_json()["error"]["field"] == field, window


def test_a_campaign_shows_every_recipient_status_in_its_counts(api, factory):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    factory.create_recipients(campaign, ["c@x.example"], status="sent")
    body = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()
    assert set(body["counts"]) == {s.value for s in RecipientStatus}
    assert body["counts"]["pending"] == 2
    assert body["counts"]["sent"] == 1
    assert body["counts"]["bounced"] == 0
    assert body["subject"] == campaign.subject
    assert body["started_at"] is None


def test_counts_take_one_group_by_query_of_the_counter_table(api, app, factory):
    campaigns = [factory.create_campaign() for _ in range(3)]
    for c in campaigns:
        factory.create_recipients(c, ["a@x.example", "b@y.example"])
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert api.get(f"/api/v1/campaigns/{campaigns[0].id}").status_code == 200
        single = [s for s in statements if "recipient" in s]
        statements.clear()
        listed = api.get("/api/v1/campaigns").get_json()["items"]
        many = [s for s in statements if "recipient" in s]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # The counts come from the triggers' table, never from counting the recipients.
    assert len(single) == 1 and "GROUP BY" in single[0] and "FROM recipient_counts" in single[0]
    assert len(many) == 1 and "GROUP BY" in many[0] and "FROM recipient_counts" in many[0]
    assert [c["counts"]["pending"] for c in listed] == [2, 2, 2]


def test_campaigns_are_listed_newest_first_page_by_page(api, factory):
    ids = [factory.create_campaign().id for _ in range(5)]
    first = api.get("/api/v1/campaigns?limit=2").get_json()
    assert [c["id"] for c in first["items"]] == ids[::-1][:2]
    second = api.get(f"/api/v1/campaigns?limit=2&cursor={first['next_cursor']}").get_json()
    third = api.get(f"/api/v1/campaigns?limit=2&cursor={second['next_cursor']}").get_json()
    seen = [c["id"] for page in (first, second, third) for c in page["items"]]
    assert seen == ids[::-1]
    assert third["next_cursor"] is None


def test_an_unknown_campaign_is_404(api):
    assert api.get("/api/v1/campaigns/12345").status_code == 404
    assert api.get("/api/v1/campaigns/x").status_code == 404


def test_a_long_body_is_accepted_in_a_multipart_upload_as_in_json(api, session):
    long_text = "Hi {{ first_name | default('there') }}, " + "é" * 600_000
    response = _upload(api, "/api/v1/campaigns", **{**CAMPAIGN, "body_text": long_text})
    assert response.status_code == 201, response.get_json()
    campaign = session.get(Campaign, response.get_json()["id"])
    assert len(campaign.body_text) == len(long_text)
