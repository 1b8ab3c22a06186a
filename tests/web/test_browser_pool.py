"""In Chromium against the real app: the sender pool (add an account from a preset, test its
connection against a passing and a failing aiosmtpd server), suppressions (an unsubscribe
through the link of a received message shows up there; add, remove with confirmation) and
domains, with screenshots of each page at 1280 and 390 px."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as default_policy

import pytest

from app.extensions import db
from app.models import Account, SenderAuthCheck
from tests.pipeline import run_until_idle, smtp_account
from tests.smtp_server import ScriptedSMTPServer

USER, PASSWORD = "ann@ok.example", "the-right-app-password"


@pytest.fixture
def auth_server():
    with ScriptedSMTPServer(auth=(USER, PASSWORD)) as server:
        yield server


def _add_account(page, name, server, password):
    page.goto("/accounts/new")
    page.get_by_label("Provider").select_option("smtp")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("From address").fill(USER)
    page.get_by_label("SMTP host").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(server.port))
    page.get_by_label("Security").select_option("none")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Add account").click()
    page.wait_for_url(re.compile(r".*/accounts/\d+$"))


def test_a_preset_fills_the_server_fields(signed_in, shoot):
    page = signed_in
    page.goto("/accounts/new")
    assert page.get_by_label("SMTP host").input_value() == "smtp.gmail.com"
    page.get_by_label("Provider").select_option("smtp2go")
    assert page.get_by_label("SMTP host").input_value() == "mail.smtp2go.com"
    assert page.get_by_label("Port").input_value() == "2525"
    assert page.get_by_label("Daily limit").input_value() == "1000"
    page.get_by_label("Provider").select_option("sendgrid")
    assert page.get_by_label("SMTP host").input_value() == "smtp.sendgrid.net"
    assert page.get_by_label("Username").input_value() == "apikey"
    page.get_by_label("Provider").select_option("gmail")
    shoot(page, "account-new")
    page.get_by_role("button", name="Add account").click()
    assert page.locator(".field-error").first.is_visible()  # name and address are missing
    shoot(page, "account-new-errors")


def test_test_connection_passes_and_fails_with_the_transcript(app, signed_in, auth_server, shoot):
    page = signed_in
    _add_account(page, "good-login", auth_server, PASSWORD)
    assert page.get_by_label("Password").input_value() == ""
    page.get_by_role("button", name="Test connection").click()
    result = page.locator(".check-result")
    result.wait_for()
    assert "passed" in result.inner_text()
    transcript = page.get_by_label("SMTP transcript").inner_text()
    assert "AUTH" in transcript and PASSWORD not in transcript
    assert PASSWORD not in page.content()
    shoot(page, "account-check-passed")

    _add_account(page, "bad-login", auth_server, "a wrong password")
    page.get_by_role("button", name="Test connection").click()
    result = page.locator(".check-result")
    result.wait_for()
    assert "failed" in result.inner_text()
    assert "535" in page.get_by_label("SMTP transcript").inner_text()
    assert "a wrong password" not in page.content()
    shoot(page, "account-check-failed")
    with app.app_context():
        ok = dict(db.session.query(Account.name, Account.last_health_ok))
    assert ok == {"good-login": True, "bad-login": False}


def test_the_pool_and_an_account_page(app, signed_in, factory, shoot):
    factory.create_account(name="gmail-ann", provider="gmail", email="ann@brand.example",
                           daily_limit=500, warmup_enabled=True, warmup_day=4)  # fmt: skip
    factory.create_account(name="relay-1", provider="postfix", email="news@brand.example",
                           daily_limit=2000)  # fmt: skip
    paused = factory.create_account(
        name="sendgrid-bob", provider="sendgrid", email="bob@other.example", status="paused",
        paused_reason="bounce rate 11.2 % over the last 50 sends", paused_by="guard",
    )  # fmt: skip
    db.session.add(SenderAuthCheck(domain="brand.example", spf="pass", dkim="pass",
                                   dmarc="pass", mx="pass", results={}))  # fmt: skip
    db.session.commit()
    page = signed_in
    page.goto("/accounts")
    cards = page.locator(".pool-card")
    assert cards.count() == 3
    assert "day 4" in cards.nth(0).inner_text()
    assert "bounce rate 11.2 %" in cards.nth(2).inner_text()
    shoot(page, "accounts")
    page.get_by_role("link", name="sendgrid-bob").click()
    assert page.get_by_role("heading", name="sendgrid-bob").is_visible()
    page.get_by_role("button", name="Resume").click()
    assert page.get_by_text("Account resumed").is_visible()
    page.get_by_role("button", name="Pause").click()
    assert page.get_by_text("Account paused").is_visible()
    page.goto(f"/accounts/{paused.id - 2}")
    shoot(page, "account")


def test_domains_show_the_fix_or_not_checked_yet(app, signed_in, factory, shoot):
    factory.create_account(email="ann@brand.example")
    factory.create_account(email="bob@fresh.example")
    db.session.add(SenderAuthCheck(
        domain="brand.example", spf="fail", dkim="pass", dmarc="fail", mx="pass",
        results={"spf": {"status": "fail", "found": "v=spf1 include:mailgun.org -all",
                         "problem": "The SPF record does not allow the server that sends.",
                         "fix": "v=spf1 include:mailgun.org include:_spf.google.com ~all"},
                 "dmarc": {"status": "fail", "found": "", "problem": "No DMARC record.",
                           "fix": "_dmarc.brand.example TXT \"v=DMARC1; p=none\""}},
    ))  # fmt: skip
    db.session.commit()
    page = signed_in
    page.goto("/domains")
    brand = page.locator("section#brand\\.example")
    assert "include:_spf.google.com" in brand.inner_text()
    assert "Not checked yet" in page.locator("section#fresh\\.example").inner_text()
    shoot(page, "domains")


def test_an_unsubscribe_from_a_received_message_is_on_the_suppressions_page(
    app, signed_in, factory, smtp_server, live_server, shoot
):
    factory.create_account(**smtp_account(smtp_server))
    factory.create_running_campaign(["carol@people.example", "dave@people.example"])
    run_until_idle(app)
    [received] = smtp_server.messages_for("carol@people.example")
    message = message_from_bytes(received.data, policy=default_policy)
    body = message.get_body(preferencelist=("plain",)).get_content()
    link = re.search(r"https://sendfleet\.test(/u/[^\s>]+)", body).group(1)
    page = signed_in
    page.goto(live_server + link)
    page.get_by_role("button", name="Unsubscribe").click()
    page.goto("/suppressions")
    page.get_by_label("Search").fill("carol")
    page.get_by_role("button", name="Search").click()
    row = page.locator("tbody tr")
    assert row.count() == 1
    assert "carol@people.example" in row.inner_text() and "unsubscribed" in row.inner_text()

    page.get_by_label("Search").fill("")
    page.get_by_role("button", name="Search").click()
    page.get_by_label("Address or domain").fill("blocked.example")
    page.get_by_label("Whole domain").check()
    page.get_by_role("button", name="Suppress").click()
    assert page.get_by_text("blocked.example is suppressed").is_visible()
    page.goto("/suppressions")
    shoot(page, "suppressions")

    page.get_by_role("link", name="Remove carol@people.example").click()
    page.get_by_role("button", name="Remove suppression").click()
    assert page.get_by_role("alert").is_visible()  # an opt-out needs the box ticked
    shoot(page, "suppression-remove")
    page.get_by_label("They asked to be mailed again").check()
    page.get_by_role("button", name="Remove suppression").click()
    assert page.get_by_text("carol@people.example is no longer suppressed").is_visible()
