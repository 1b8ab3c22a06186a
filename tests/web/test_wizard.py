"""The new-campaign wizard through the Flask test client: every step against the real
services (the browser proof is test_browser_campaign.py)."""

from __future__ import annotations

import csv
import io

import pytest

from tests.pipeline import smtp_account
from tests.web.test_login import csrf_of, sign_in, user  # noqa: F401  (fixture)

# As Google Contacts exports it: the address is "E-mail 1 - Value", not "Email".
GOOGLE_CSV = (
    "Name,Given Name,Organization 1 - Name,E-mail 1 - Type,E-mail 1 - Value\n"
    "Ann Lee,Ann,Acme,* Work,ann@acme.example\n"
    "Bob Stone,Bob,,* Work,bob@initech.example\n"
    "Cy Twombly,Cy,Globex,* Home,not-an-address\n"
    "Ann again,Ann,Acme,* Work,ANN@acme.example\n"
    "Dee Hock,,Visa,* Work,dee@visa.example\n"
    '=HYPERLINK("x"),Eve,Evil,* Work,@evil\n'
)


@pytest.fixture
def web(client, user):  # noqa: F811
    assert sign_in(client).status_code == 302
    return client


def post(client, path, data=None, **kwargs):
    page = client.get(path if not path.endswith("/preview") else "/campaigns/new/message")
    token = csrf_of(page.get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def upload(client, content: bytes, name="contacts.csv"):
    return post(
        client,
        "/campaigns/new",
        {"file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_the_wizard_from_upload_to_a_started_campaign(web, factory, smtp_server, session):
    factory.create_account(**smtp_account(smtp_server), name="relay", daily_limit=100)
    response = upload(web, GOOGLE_CSV.encode())
    assert response.status_code == 302, response.get_data(as_text=True)
    assert response.headers["Location"] == "/campaigns/new/columns"

    columns = web.get("/campaigns/new/columns").get_data(as_text=True)
    assert 'value="E-mail 1 - Value" selected' in columns
    assert "{{ given_name }}" in columns and "{{ organization_1_name }}" in columns
    assert "ann@acme.example" in columns  # the first rows

    response = post(web, "/campaigns/new/columns", {"email_column": "E-mail 1 - Value"})
    assert response.headers["Location"] == "/campaigns/new/check"
    check = web.get("/campaigns/new/check").get_data(as_text=True)
    assert 'data-stat="imported">3<' in check
    assert 'data-stat="invalid">2<' in check
    assert 'data-stat="duplicate">1<' in check
    assert 'data-blank-field="given_name"' in check
    assert 'data-blank-field="organization_1_name"' in check

    rejected = web.get("/campaigns/new/rejected.csv")
    assert rejected.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(rejected.get_data(as_text=True))))
    assert rows[0][-2:] == ["row", "reason"]
    assert [r[-2] for r in rows[1:]] == ["4", "5", "7"]
    assert rows[2][-1] == "duplicate of row 2"
    assert rows[3][0] == '\'=HYPERLINK("x")'  # neutralised
    assert rows[3][4] == "'@evil"

    message = {
        "name": "Spring",
        "subject": "Hi {{ given_name | default('there') }}",
        "body_text": "Hello from {{ organization_1_name }}.",
        "body_html": "",
        "from_name": "Sendfleet Team",
    }
    preview = post(
        web, "/campaigns/new/preview", {**message, "preview_email": "bob@initech.example"}
    )
    shown = preview.get_data(as_text=True)
    assert "Hi Bob" in shown
    assert "List-Unsubscribe" in shown
    assert "https://sendfleet.test/u/" in shown
    assert "Sendfleet Test Ltd, 1 Test Street" in shown  # the footer

    with_html = {**message, "body_html": "<p>Hello <b>{{ given_name }}</b></p>"}
    shown = post(
        web, "/campaigns/new/preview", {**with_html, "preview_email": "bob@initech.example"}
    )
    html = shown.get_data(as_text=True)
    assert 'sandbox srcdoc="&lt;p&gt;Hello &lt;b&gt;Bob&lt;/b&gt;' in html
    assert "Content-Type</dt><dd>multipart/alternative" in html

    response = post(web, "/campaigns/new/message", message)
    assert response.headers["Location"] == "/campaigns/new/senders"
    response = post(
        web,
        "/campaigns/new/senders",
        {
            "senders": "all",
            "use_window": "1",
            "timezone": "Europe/Berlin",
            "days": ["0", "1", "2", "3", "4", "5", "6"],
            "start_hour": "0",
            "end_hour": "24",
            "daily_cap": "50",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    schedule_path = response.headers["Location"]
    assert schedule_path.endswith("/schedule")
    schedule = web.get(schedule_path).get_data(as_text=True)
    assert "The schedule before you start" in schedule
    assert "3 recipients to send" in schedule

    from app.models import Campaign, ForecastSnapshot

    campaign = session.query(Campaign).one()
    assert campaign.status == "draft"
    assert campaign.window["timezone"] == "Europe/Berlin"
    assert campaign.daily_cap == 50
    start = post(web, f"/campaigns/{campaign.id}/start")
    assert start.status_code == 302
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == "running"
    assert session.get(ForecastSnapshot, campaign.id).days[0]["sends"] == 3
    page = web.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Planned at start" in page
    assert web.get(f"/campaigns/{campaign.id}/chart.json").is_json


def test_a_file_that_is_not_csv_is_refused_with_a_clear_message(web, session):
    response = upload(web, b"PK\x03\x04 binary", name="contacts.xlsx")
    assert response.status_code == 422
    assert "contacts.xlsx is a .xlsx file, not CSV" in response.get_data(as_text=True)


def test_an_empty_csv_is_refused_and_nothing_is_kept(web, session):
    response = upload(web, b"")
    assert response.status_code == 422
    assert "contacts.csv: the file is empty" in response.get_data(as_text=True)
    assert web.get("/campaigns/new/columns").headers["Location"] == "/campaigns/new"


def test_a_header_only_csv_says_it_has_no_rows(web, session):
    assert upload(web, b"Email,Name\n").status_code == 302
    response = post(web, "/campaigns/new/columns", {"email_column": "Email"})
    assert response.status_code == 422
    assert "no data rows" in response.get_data(as_text=True)


def test_a_template_error_is_shown_next_to_the_field(web, session):
    upload(web, b"Email,Name\nann@example.org,Ann\n")
    post(web, "/campaigns/new/columns", {"email_column": "Email"})
    response = post(
        web,
        "/campaigns/new/message",
        {
            "name": "x",
            "subject": "Hi {{ name",
            "body_text": "Hello",
            "body_html": "",
            "from_name": "",
        },
    )
    assert response.status_code == 422
    assert "field-error" in response.get_data(as_text=True)


def test_the_live_preview_imports_a_sample_not_the_whole_file(web, session, app):
    rows = "".join(f"p{i}@example.org,P{i}\n" for i in range(600))
    upload(web, f"Email,Name\n{rows}".encode())
    post(web, "/campaigns/new/columns", {"email_column": "Email"})
    message = {"name": "x", "subject": "Hi {{ name }}", "body_text": "Hello", "body_html": ""}
    shown = post(web, "/campaigns/new/preview", {**message, "preview_email": "p3@example.org"})
    assert "Hi P3" in shown.get_data(as_text=True)
    from app.web.wizard_state import upload_dir

    found = list(upload_dir().glob("*.sample.csv"))
    assert len(found) == 1
    assert len(found[0].read_text().splitlines()) == 1 + 500


def test_a_window_that_ends_before_it_starts_is_refused_next_to_the_field(web, session):
    upload(web, b"Email,Name\nann@example.org,Ann\n")
    post(web, "/campaigns/new/columns", {"email_column": "Email"})
    post(
        web,
        "/campaigns/new/message",
        {"name": "x", "subject": "Hi", "body_text": "Hello", "body_html": "", "from_name": ""},
    )
    response = post(
        web,
        "/campaigns/new/senders",
        {
            "senders": "all",
            "use_window": "1",
            "timezone": "Mars/Olympus",
            "days": ["0"],
            "start_hour": "9",
            "end_hour": "17",
        },
    )
    assert response.status_code == 422
    assert "field-error" in response.get_data(as_text=True)
    from app.models import Campaign

    assert session.query(Campaign).count() == 0
