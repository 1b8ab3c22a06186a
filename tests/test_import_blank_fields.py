"""Blank and missing fields: every column is a field of every recipient, creation and
imports warn how many recipients have no value for each field the templates use, and a
template problem creation could find is a 422 there, never a recipient lost at send."""

from __future__ import annotations

import io
from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import select

from app.extensions import db
from app.models import Recipient
from tests.pipeline import run_until_idle, smtp_account

CAMPAIGN = {
    "name": "Blank cells",
    "subject": "Hello {{ first_name }}",
    "body_text": "Hi {{ first_name }} at {{ company }}, from {{ team | default('us') }}",
}
CSV = (
    b"Email,First Name,Company,Team\n"
    b"ann@example.com,Ann,ACME,Sales\n"
    b"bob@example.com,Bob,,\n"
    b"cy@example.com,,  ,Ops\n"
)


def _upload(api, path, csv, **form):
    data = {**form, "file": (io.BytesIO(csv), "list.csv")}
    return api.post(path, data=data, content_type="multipart/form-data")


def _fields(email: str) -> dict:
    db.session.expire_all()
    return db.session.execute(select(Recipient.fields).where(Recipient.email == email)).scalar_one()


def test_csv_creation_warns_how_many_recipients_lack_each_template_field(api, app):
    response = _upload(api, "/api/v1/campaigns", CSV, **CAMPAIGN)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["imported"] == 3
    assert body["warnings"]["blank_fields"] == {"company": 2, "first_name": 1, "team": 1}
    messages = body["warnings"]["messages"]
    assert any("2 of 3 imported recipients have no value for 'company'" in m for m in messages)
    with app.app_context():
        assert _fields("bob@example.com") == {"first_name": "Bob", "company": "", "team": ""}


def test_json_creation_counts_missing_keys_and_nulls_as_blank(api, app):
    recipients = [
        {"email": "ann@example.com", "first_name": "Ann", "company": "ACME", "team": "x"},
        {"email": "bob@example.com", "first_name": "Bob", "company": None},
        {"email": "cy@example.com", "first_name": "", "company": "Cyco"},
    ]
    response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "recipients": recipients})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["warnings"]["blank_fields"] == {
        "company": 1,
        "first_name": 1,
        "team": 2,
    }
    with app.app_context():
        assert _fields("bob@example.com") == {"first_name": "Bob", "company": "", "team": ""}


def test_no_warning_when_every_recipient_has_every_field(api):
    response = _upload(
        api, "/api/v1/campaigns", CSV.splitlines(True)[0] + CSV.splitlines(True)[1], **CAMPAIGN
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["warnings"] == {"blank_fields": {}, "messages": []}


def test_added_recipients_without_a_template_column_are_counted_blank(api, app):
    created = _upload(api, "/api/v1/campaigns", CSV, **CAMPAIGN).get_json()
    response = _upload(
        api,
        f"/api/v1/campaigns/{created['id']}/recipients",
        b"email,first_name\ndee@example.com,Dee\neve@example.com,Eve\n",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["warnings"]["blank_fields"] == {"company": 2, "team": 2}
    json_add = api.post(
        f"/api/v1/campaigns/{created['id']}/recipients",
        json={"recipients": [{"email": "fay@example.com", "first_name": "Fay", "company": ""}]},
    )
    assert json_add.status_code == 201, json_add.get_json()
    assert json_add.get_json()["warnings"]["blank_fields"] == {"company": 1, "team": 1}


def test_a_field_no_recipient_has_is_a_422_naming_the_template_and_the_field(api):
    response = _upload(
        api, "/api/v1/campaigns", CSV, **{**CAMPAIGN, "body_text": "Hi {{ compnay }}"}
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "body_text" and error["code"] == "template"
    assert "{{ compnay }}" in error["message"] and "no recipient has" in error["message"]
    assert "company, first_name, team" in error["message"]


def test_a_template_that_fails_for_blank_values_is_refused_at_creation(api):
    # `first_name[0]` works for "sample" and for Ann, not for cy's blank first name.
    response = _upload(
        api, "/api/v1/campaigns", CSV, **{**CAMPAIGN, "subject": "Hi {{ first_name[0] }}"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "subject"


def test_a_template_that_fails_for_a_real_recipient_is_refused_naming_the_row(api):
    recipients = [{"email": "ann@example.com", "score": 3}]
    response = api.post(
        "/api/v1/campaigns",
        json={**CAMPAIGN, "body_text": "{{ score + 1 }}", "subject": "s", "recipients": recipients},
    )
    # "sample" + 1 fails as well: the check says which template.
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "body_text"
    ok = api.post(
        "/api/v1/campaigns",
        json={
            **CAMPAIGN,
            "subject": "s",
            "body_text": "{{ (score | int) + 1 }} {{ score.upper() }}",
            "recipients": recipients,
        },
    )
    assert ok.status_code == 422
    error = ok.get_json()["error"]
    assert error["field"] == "body_text" and "row 1" in error["message"]


def test_a_template_over_the_render_limits_is_a_422_at_creation(api):
    for body in ("{{ 'x' | center(900000000) }}", "{{ ([first_name] * 100000000) | join }}"):
        response = _upload(api, "/api/v1/campaigns", CSV, **{**CAMPAIGN, "body_text": body})
        assert response.status_code == 422, body
        error = response.get_json()["error"]
        assert error["field"] == "body_text"
        assert "over a template limit" in error["message"]
    html = _upload(
        api,
        "/api/v1/campaigns",
        CSV,
        **{**CAMPAIGN, "body_html": "{% for i in range(99999) %}{% for j in range(99999) %}"
           "{% endfor %}{% endfor %}"},
    )  # fmt: skip
    assert html.status_code == 422
    assert html.get_json()["error"]["field"] == "body_html"


def test_a_blank_cell_recipient_is_sent_through_the_real_send_path(api, app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    created = _upload(api, "/api/v1/campaigns", CSV, **CAMPAIGN).get_json()
    assert api.post(f"/api/v1/campaigns/{created['id']}/start").status_code == 200
    run_until_idle(app)
    with app.app_context():
        db.session.expire_all()
        statuses = dict(
            db.session.execute(
                select(Recipient.email, Recipient.status).where(
                    Recipient.campaign_id == created["id"]
                )
            ).all()
        )
    assert statuses == {
        "ann@example.com": "sent",
        "bob@example.com": "sent",
        "cy@example.com": "sent",
    }
    bob = _message(smtp_server, "bob@example.com")
    assert "Hi Bob at , from us" in bob.get_body(("plain",)).get_content()
    cy = _message(smtp_server, "cy@example.com")
    assert cy["Subject"].strip() == "Hello"
    assert "Hi  at , from Ops" in cy.get_body(("plain",)).get_content()


def _message(server, email):
    [received] = server.messages_for(email)
    return message_from_bytes(received.data, policy=default_policy)


def test_a_recipient_without_a_field_of_the_campaign_renders_it_empty(app, factory, smtp_server):
    # Rows stored before every column became a field of every row (or by an import that
    # lacked the column) get "" from the campaign's field names at send time.
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(
        status="running",
        subject="Hi",
        body_text="Dear {{ first_name }} of {{ company }}.",
        field_names=["company", "first_name"],
    )
    factory.create_recipients(campaign, ["old@example.com"], fields={"first_name": "Old"})
    run_until_idle(app)
    text = _message(smtp_server, "old@example.com").get_body(("plain",)).get_content()
    assert "Dear Old of ." in text
