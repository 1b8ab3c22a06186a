"""In Chromium, against the real app, a real Celery worker and beat and an aiosmtpd sink:
a contacts export goes from upload to a sent campaign, with every wizard step checked on
the way, then pause and resume while the worker sends."""

from __future__ import annotations

import csv
import io
import re
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from playwright.sync_api import expect

from app.models import Campaign, ForecastSnapshot
from tests.e2e.conftest import status_counts
from tests.pipeline import smtp_account

VALID = 20
# As Google Contacts exports it: the address is in "E-mail 1 - Value"; four people have no
# given name; two rows are invalid and one repeats an address in other letter case.
ROWS = [
    (f"Person {i}", "" if i % 5 == 0 else f"Given{i}", f"Org {i % 3}", f"p{i}@d{i % 5}.example")
    for i in range(VALID)
]
GOOGLE_CSV = (
    "Name,Given Name,Organization 1 - Name,E-mail 1 - Value\n"
    + "".join(f"{n},{g},{o},{e}\n" for n, g, o, e in ROWS)
    + "No Address,Zed,Org,\nBad Address,Bad,Org,bad@@example\nAgain,Given1,Org 1,P1@D1.example\n"
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def sink_account(factory, smtp_server):
    # 60 a minute, spread over the minute: a send a second, slow enough to pause midway.
    return factory.create_account(
        **smtp_account(smtp_server), name="relay", daily_limit=1000, per_minute_limit=60
    )


def tokenless(text):
    return re.sub(r"/u/[A-Za-z0-9._-]+", "/u/TOKEN", text)


def test_a_contacts_export_becomes_a_sent_campaign(
    web_stack, signed_in, sink_account, smtp_server, session, shoot, tmp_path
):
    page = signed_in
    page.get_by_role("link", name="New campaign").first.click()
    shoot(page, "wizard-1-upload")
    csv_path = tmp_path / "google-contacts.csv"
    csv_path.write_text(GOOGLE_CSV)
    page.get_by_label("Drop the CSV file here").set_input_files(str(csv_path))
    expect(page.locator("[data-dropzone-name]")).to_have_text("google-contacts.csv")
    page.get_by_role("button", name="Upload and continue").click()

    # Columns: the importer's guess is preselected; the fields and first rows are shown.
    page.wait_for_url("**/campaigns/new/columns")
    expect(page.get_by_label("Email column")).to_have_value("E-mail 1 - Value")
    expect(page.locator(".chips")).to_contain_text("{{ given_name }}")
    expect(page.locator(".sample-table")).to_contain_text("p1@d1.example")
    shoot(page, "wizard-2-columns")
    page.get_by_role("button", name="Check the contacts").click()

    # The validation report.
    page.wait_for_url("**/campaigns/new/check")
    expect(page.locator('[data-stat="imported"]')).to_have_text(str(VALID))
    expect(page.locator('[data-stat="invalid"]')).to_have_text("2")
    expect(page.locator('[data-stat="duplicate"]')).to_have_text("1")
    expect(page.locator('[data-blank-field="given_name"]')).to_contain_text(
        f"blank for 4 of {VALID} recipients"
    )
    expect(page.locator(".errors-table")).to_contain_text("duplicate of row 3")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download rejected rows (CSV)").click()
    rejected = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rejected[0] == [
        "name",
        "given_name",
        "organization_1_name",
        "e_mail_1_value",
        "row",
        "reason",
    ]
    assert [(r[0], r[-1]) for r in rejected[1:]] == [
        ("No Address", "no email address"),
        ("Bad Address", rejected[2][-1]),
        ("Again", "duplicate of row 3"),
    ]
    shoot(page, "wizard-3-check")
    page.get_by_role("link", name="Write the message").click()

    # The message, with the live preview as it will be sent.
    page.wait_for_url("**/campaigns/new/message")
    page.get_by_label("Campaign name").fill("Spring outreach")
    page.get_by_label("Subject").fill("Hello {{ given_name | default('there') }}")
    page.get_by_label("Text body", exact=True).fill(
        "We met at {{ organization_1_name }}.\nUnsubscribe: {{ unsubscribe_url }}"
    )
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Hello there")  # p0 has no given name
    expect(preview).to_contain_text("List-Unsubscribe")
    expect(preview).to_contain_text("Sendfleet Test Ltd, 1 Test Street")
    page.get_by_label("Recipient").select_option("p7@d2.example")
    expect(preview).to_contain_text("Hello Given7")
    expect(preview).to_contain_text("We met at Org 1.")
    previewed = page.locator("[data-preview-text]").text_content()
    shoot(page, "wizard-4-message")
    page.get_by_role("button", name="Continue to senders").click()

    page.wait_for_url("**/campaigns/new/senders")
    shoot(page, "wizard-5-senders")
    page.get_by_role("button", name="Save draft and see the schedule").click()

    # The forecast, before anything is sent.
    page.wait_for_url(re.compile(r".*/campaigns/\d+/schedule$"))
    expect(page.locator("[data-forecast-summary]")).to_contain_text(f"{VALID} recipients to send")
    expect(page.locator("[data-forecast-today]")).to_have_text(str(VALID))
    shoot(page, "wizard-6-schedule")
    campaign_id = int(page.url.rsplit("/", 2)[1])
    assert session.get(Campaign, campaign_id).status == "draft"

    # A form posted without its CSRF token changes nothing.
    page.evaluate(
        "document.querySelector('form[action$=\"/start\"] input[name=csrf_token]').remove()"
    )
    page.get_by_role("button", name="Start sending").click()
    expect(page.get_by_role("heading", name="That request could not be used")).to_be_visible()
    expect(page.locator(".error-card")).to_contain_text("Nothing was changed")
    shoot(page, "error-csrf")
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "draft"
    assert status_counts(campaign_id) == {"pending": VALID}

    page.goto(f"/campaigns/{campaign_id}/schedule")
    page.get_by_role("button", name="Start sending").click()
    page.wait_for_url(f"**/campaigns/{campaign_id}")
    expect(page.locator("#campaign-live")).to_have_attribute("data-status", "running")

    # Pause once some are sent: the figures stop moving; resume: it finishes.
    expect(page.locator('#campaign-live [data-count="sent"]')).not_to_have_text("0", timeout=30_000)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#campaign-live")).to_have_attribute("data-status", "paused")
    page.wait_for_timeout(2500)  # what was already handed to the worker settles
    paused_at = status_counts(campaign_id).get("sent", 0)
    assert paused_at < VALID, "the whole campaign went before the pause; slow the account"
    page.wait_for_timeout(4000)
    assert status_counts(campaign_id).get("sent", 0) == paused_at
    shoot(page, "campaign-paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#campaign-live")).to_have_attribute("data-status", "running")

    # The list follows the campaign by itself (htmx polls its rows) ...
    page.get_by_role("link", name="Campaigns", exact=True).click()
    row = page.locator(f'tr[data-campaign-id="{campaign_id}"]')
    before = row.locator(".progress-text").inner_text()
    expect(row.locator(".progress-text")).to_contain_text("100 %", timeout=90_000)
    assert not before.startswith("100 %"), before
    shoot(page, "campaigns-list")
    # ... and so does the campaign's page.
    page.goto(f"/campaigns/{campaign_id}")
    expect(page.locator("#campaign-live .progress-text")).to_contain_text("100 %", timeout=30_000)
    assert status_counts(campaign_id) == {"sent": VALID}
    assert sorted(r.recipients[0] for r in smtp_server.received) == sorted(e for *_, e in ROWS)
    # The preview was the message the worker then sent (but for the recipient's own token).
    sent_to_p7 = next(r for r in smtp_server.received if r.recipients == ["p7@d2.example"])
    message = message_from_bytes(sent_to_p7.data, policy=default_policy)
    assert message["Subject"] == "Hello Given7"
    received = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert tokenless(received) == tokenless(previewed)

    # The campaign page: chart, the forecast against what happened, recipients.
    page.reload()
    against = page.locator(".against-table tbody tr").first.locator("td")
    expect(against).to_have_text([re.compile(r"\d{4}-\d\d-\d\d"), str(VALID), str(VALID)])
    assert session.get(ForecastSnapshot, campaign_id) is not None
    page.get_by_label("Search").fill("p7@")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".recipients-table tbody tr")).to_have_count(1)
    page.goto(f"/campaigns/{campaign_id}")
    page.wait_for_timeout(800)  # the chart draws
    shoot(page, "campaign-sent")


def test_wrong_file_type_and_empty_csv_say_so_and_keep_nothing(signed_in, shoot, tmp_path, app):
    page = signed_in
    page.goto("/campaigns/new")
    sheet = tmp_path / "contacts.xlsx"
    sheet.write_bytes(b"PK\x03\x04 a spreadsheet")
    page.get_by_label("Drop the CSV file here").set_input_files(str(sheet))
    page.get_by_role("button", name="Upload and continue").click()
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"contacts\.xlsx is a \.xlsx file, not CSV")
    )
    shoot(page, "wizard-wrong-file-type")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page.get_by_label("Drop the CSV file here").set_input_files(str(empty))
    page.get_by_role("button", name="Upload and continue").click()
    expect(page.get_by_role("alert")).to_have_text("empty.csv: the file is empty")
    page.goto("/campaigns/new/columns")
    assert page.url.endswith("/campaigns/new")  # no upload is kept


def test_a_file_dropped_on_the_upload_area_is_uploaded(signed_in):
    page = signed_in
    page.goto("/campaigns/new")
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            const text = "Email,Name\\nann@example.org,Ann\\n";
            data.items.add(new File([text], "dropped.csv", {type: "text/csv"}));
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }"""
    )
    expect(page.locator("[data-dropzone-name]")).to_have_text("dropped.csv")
    page.get_by_role("button", name="Upload and continue").click()
    page.wait_for_url("**/campaigns/new/columns")
    expect(page.get_by_label("Email column")).to_have_value("Email")
