"""Real export files: the email column of Google Contacts, Outlook, HubSpot, Mailchimp,
LinkedIn and Apollo exports is found (the primary one where there are several), an
explicit email_column / --email-column chooses any other, and the limits agree: the CLI
is bounded by rows, uploads by rows and bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.errors import InvalidInput
from app.extensions import db
from app.models import Recipient
from app.services.csv_headers import email_rank
from app.services.imports import import_csv
from tests.test_cli import flask_cli

CAMPAIGN = {"name": "Export", "subject": "Hi", "body_text": "Hello"}

# Header rows as each tool writes them (abridged where the real row has dozens of columns).
GOOGLE = (
    "Name,Given Name,Family Name,Nickname,Birthday,Notes,Group Membership,"
    "E-mail 1 - Type,E-mail 1 - Value,E-mail 2 - Type,E-mail 2 - Value,"
    "Phone 1 - Type,Phone 1 - Value\r\n"
    "Ann Lee,Ann,Lee,,,,* myContacts,* Home,ann@example.com,* Work,ann@work.example,"
    "Mobile,+49 30 1234\r\n"
)
GOOGLE_NEW = (
    "First Name,Middle Name,Last Name,Labels,E-mail 1 - Label,E-mail 1 - Value,"
    "E-mail 2 - Label,E-mail 2 - Value,Phone 1 - Label,Phone 1 - Value\r\n"
    "Ann,,Lee,* myContacts,* Home,ann@example.com,Work,ann@work.example,Mobile,+1 555\r\n"
)
OUTLOOK = (
    '"First Name","Middle Name","Last Name","Title","Suffix","Company","E-mail Address",'
    '"E-mail Type","E-mail Display Name","E-mail 2 Address","E-mail 2 Type",'
    '"E-mail 3 Address","Business Phone"\r\n'
    '"Ann","","Lee","","","ACME","ann@example.com","SMTP","Ann Lee (ann@example.com)",'
    '"ann@work.example","SMTP","","+1 555"\r\n'
)
HUBSPOT = (
    "Record ID,First Name,Last Name,Email,Phone Number,Contact owner,Lead Status,"
    "Email Domain,Create Date\r\n"
    "101,Ann,Lee,ann@example.com,,Sam Sales,New,example.com,2024-05-01 10:00\r\n"
)
MAILCHIMP = (
    "Email Address,First Name,Last Name,Address,Phone Number,MEMBER_RATING,OPTIN_TIME,"
    "LEID,EUID,TAGS\r\n"
    'ann@example.com,Ann,Lee,,,2,2024-05-01 10:00:00,123,abc,"""VIP"""\r\n'
)
LINKEDIN = (
    "Notes:\n"
    '"When exporting your connection data, you may notice that some of the email addresses '
    "are missing. You will only see email addresses for connections who have allowed their "
    "connections to see or download their email address using this setting "
    'https://www.linkedin.com/psettings/privacy/email. You can learn more here"\n'
    "\n"
    "First Name,Last Name,URL,Email Address,Company,Position,Connected On\n"
    "Ann,Lee,https://www.linkedin.com/in/annlee,ann@example.com,ACME,CTO,01 May 2024\n"
    "Bob,Roe,https://www.linkedin.com/in/bobroe,,Initech,Dev,02 May 2024\n"
)
APOLLO = (
    "First Name,Last Name,Title,Company,Company Name for Emails,Email,Email Status,"
    "Primary Email Source,Email Confidence,Secondary Email,Secondary Email Source,"
    "Tertiary Email,Seniority,Departments\r\n"
    "Ann,Lee,CTO,ACME,ACME,ann@example.com,Verified,Apollo,,ann@other.example,,"
    ",C suite,Engineering\r\n"
)


def run(settings, campaign_id, data: str, **kwargs):
    with unit_of_work() as session:
        return import_csv(session, campaign_id, io.BytesIO(data.encode()), settings, **kwargs)


def emails(campaign_id: int) -> list[str]:
    db.session.rollback()
    return list(
        db.session.execute(
            select(Recipient.email)
            .where(Recipient.campaign_id == campaign_id)
            .order_by(Recipient.id)
        ).scalars()
    )


@pytest.mark.parametrize(
    ("export", "other_field"),
    [
        (GOOGLE, "e_mail_2_value"),
        (GOOGLE_NEW, "e_mail_2_value"),
        (OUTLOOK, "e_mail_2_address"),
        (HUBSPOT, "email_domain"),
        (MAILCHIMP, "member_rating"),
        (APOLLO, "secondary_email"),
    ],
    ids=["google", "google-2024", "outlook", "hubspot", "mailchimp", "apollo"],
)
def test_exports_of_contact_tools_import_their_primary_address(
    factory, settings, export, other_field
):
    campaign = factory.create_campaign()
    report = run(settings, campaign.id, export)
    assert report.imported == 1, report.as_dict()
    assert emails(campaign.id) == ["ann@example.com"]
    # The other address columns stay fields, so a template may use them.
    assert other_field in report.field_names


def test_linkedin_connections_skip_the_notes_preamble(factory, settings):
    campaign = factory.create_campaign()
    report = run(settings, campaign.id, LINKEDIN)
    assert report.imported == 1
    # Bob has no address (LinkedIn hides it): reported at his spreadsheet row.
    assert [(e.row, e.reason) for e in report.errors] == [(6, "no email address")]
    assert emails(campaign.id) == ["ann@example.com"]
    assert "connected_on" in report.field_names


@pytest.mark.parametrize(
    "header",
    [
        "Email",
        "EMAIL",
        "e-mail",
        "E_Mail",
        "email_address",
        "Email Address",
        "emailAddress",
        "mail",
        "E-Mail-Adresse",
        "Courriel",
        "Adresse e-mail",
        "Correo electrónico",
        "Correo",
        "E-post",
        "Sähköposti",
        "Indirizzo email",
        "Endereço de e-mail",
        "E-mailadres",
    ],
)
def test_header_variants_and_other_languages_are_recognised(factory, settings, header):
    campaign = factory.create_campaign()
    report = run(settings, campaign.id, f"Name,{header}\nAnn,ann@example.com\n")
    assert report.imported == 1


def test_primary_columns_rank_before_second_choices() -> None:
    assert email_rank("E-mail 1 - Value") == 0
    assert email_rank("Email") == 0
    assert email_rank("E-mail 2 - Value") > 0
    assert email_rank("Secondary Email") > email_rank("Email")  # type: ignore[operator]
    for other in ("E-mail Type", "E-mail 1 - Label", "Email Status", "Company Name for Emails"):
        assert email_rank(other) is None, other


def test_equally_likely_columns_are_refused_listing_them(factory, settings):
    campaign = factory.create_campaign()
    with pytest.raises(InvalidInput) as caught:
        run(settings, campaign.id, "Work Email,Personal Email\na@example.com,b@example.com\n")
    assert caught.value.field == "file"
    assert "'Work Email', 'Personal Email'" in caught.value.message
    assert "email_column" in caught.value.message and "--email-column" in caught.value.message
    # Choosing one resolves it.
    report = run(
        settings,
        campaign.id,
        "Work Email,Personal Email\na@example.com,b@example.com\n",
        email_column="personal email",
    )
    assert report.imported == 1 and report.field_names == ["work_email"]
    assert emails(campaign.id) == ["b@example.com"]


def _upload(api, path, csv: bytes, **form):
    data = {**form, "file": (io.BytesIO(csv), "export.csv")}
    return api.post(path, data=data, content_type="multipart/form-data")


CUSTOM = b"Name,Kontakt,Firma\nAnn,ann@example.com,ACME\nBob,bob@example.com,Initech\n"


def test_no_email_column_is_a_422_listing_the_headers_and_how_to_choose(api):
    response = _upload(api, "/api/v1/campaigns", CUSTOM, **CAMPAIGN)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "file"
    assert "'Name', 'Kontakt', 'Firma'" in error["message"]
    assert "email_column" in error["message"]


def test_email_column_chooses_the_column_on_creation_and_on_adding(api, app):
    response = _upload(api, "/api/v1/campaigns", CUSTOM, **CAMPAIGN, email_column=" kontakt ")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["imported"] == 2
    campaign_id = response.get_json()["id"]
    more = _upload(
        api,
        f"/api/v1/campaigns/{campaign_id}/recipients",
        b"Name,Kontakt\nCy,cy@example.com\n",
        email_column="KONTAKT",
    )
    assert more.status_code == 201, more.get_json()
    with app.app_context():
        assert emails(campaign_id) == ["ann@example.com", "bob@example.com", "cy@example.com"]
    campaign = api.get(f"/api/v1/campaigns/{campaign_id}").get_json()
    assert campaign["field_names"] == ["firma", "name"]


@pytest.mark.parametrize("path", ["/api/v1/campaigns", "/api/v1/campaigns/{id}/recipients"])
def test_an_unknown_email_column_is_a_422_naming_it(api, factory, path):
    campaign = factory.create_campaign()
    form = CAMPAIGN if path == "/api/v1/campaigns" else {}
    response = _upload(api, path.format(id=campaign.id), CUSTOM, **form, email_column="Mail")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "email_column"
    assert "'Mail'" in error["message"] and "'Kontakt'" in error["message"]


def test_an_upload_over_the_byte_limit_is_a_413_naming_it(api, app, factory, monkeypatch):
    campaign = factory.create_campaign()
    patched = app.extensions["settings"].model_copy(update={"import_max_bytes": 1000})
    monkeypatch.setitem(app.extensions, "settings", patched)
    big = b"email,notes\n" + b"".join(b"u%d@example.com,%s\n" % (i, b"n" * 50) for i in range(40))
    response = _upload(api, f"/api/v1/campaigns/{campaign.id}/recipients", big)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["field"] == "file" and "1,000 bytes" in error["message"]
    assert "IMPORT_MAX_BYTES" in error["message"]


def test_the_default_limits_admit_a_million_ordinary_rows_over_http(app, settings):
    # ~60 MB for 1,000,000 rows of five columns; wide exports are 2-3 times that.
    assert settings.import_max_bytes >= 150 * 1024 * 1024
    assert app.config["MAX_CONTENT_LENGTH"] > settings.import_max_bytes
    assert settings.import_max_rows == 1_000_000


def test_json_bodies_keep_their_own_cap(api, app, monkeypatch):
    patched = app.extensions["settings"].model_copy(update={"api_max_json_bytes": 2000})
    monkeypatch.setitem(app.extensions, "settings", patched)
    rows = [{"email": f"u{i}@example.com"} for i in range(100)]
    response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "recipients": rows})
    assert response.status_code == 413
    assert "API_MAX_JSON_BYTES" in response.get_json()["error"]["message"]


def test_the_cli_imports_a_file_over_the_upload_limit(factory, settings_env, tmp_path: Path):
    campaign = factory.create_campaign()
    path = tmp_path / "big.csv"
    path.write_text("Kontakt,Name\n" + "".join(f"u{i}@example.com,User {i}\n" for i in range(300)))
    assert path.stat().st_size > 5000
    env = {**settings_env, "IMPORT_MAX_BYTES": "5000"}
    result = flask_cli(env, "import", str(campaign.id), str(path), "--email-column", "kontakt")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"Imported 300 recipients into campaign {campaign.id}."
    assert len(emails(campaign.id)) == 300


def test_the_cli_without_an_email_column_says_how_to_choose_one(
    factory, settings_env, tmp_path: Path
):
    campaign = factory.create_campaign()
    path = tmp_path / "custom.csv"
    path.write_bytes(CUSTOM)
    result = flask_cli(settings_env, "import", str(campaign.id), str(path))
    assert result.returncode == 1
    assert "'Name', 'Kontakt', 'Firma'" in result.stderr
    assert "--email-column" in result.stderr
    unknown = flask_cli(settings_env, "import", str(campaign.id), str(path), "--email-column", "x")
    assert unknown.returncode == 1
    assert "email_column: email_column 'x' is not a column" in unknown.stderr


def test_the_cli_prints_blank_field_warnings(factory, settings_env, tmp_path: Path):
    campaign = factory.create_campaign(
        body_text="Hi {{ first_name }} at {{ company }}", field_names=[]
    )
    path = tmp_path / "blank.csv"
    path.write_text("email,first_name,company\na@example.com,Ann,\nb@example.com,Bob,\n")
    result = flask_cli(settings_env, "import", str(campaign.id), str(path))
    assert result.returncode == 0, result.stderr
    assert "Warning: 2 of 2 imported recipients have no value for 'company'" in result.stdout
