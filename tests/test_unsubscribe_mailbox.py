"""List-Unsubscribe through the real send path: the https one-click URL always, the mailto
part only for the operator's own UNSUBSCRIBE_MAILBOX (never unsubscribe@<sending domain>)."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from cryptography.fernet import Fernet

from app.settings import SettingsError, load_settings
from tests.pipeline import run_until_idle, smtp_account


def _received(app, factory, smtp_server, email: str):
    factory.create_account(**smtp_account(smtp_server), email="ann@gmail.com")
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, [email])
    run_until_idle(app)
    [received] = smtp_server.messages_for(email)
    return message_from_bytes(received.data, policy=default_policy)


def test_without_a_mailbox_the_header_is_the_https_url_alone(app, factory, smtp_server):
    assert app.extensions["settings"].unsubscribe_mailbox is None
    message = _received(app, factory, smtp_server, "bo@example.org")
    [header] = message.get_all("List-Unsubscribe")
    assert header.startswith("<https://sendfleet.test/u/") and header.endswith(">")
    assert header.count("<") == 1 and "mailto:" not in header
    assert "gmail.com" not in header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_operators_mailbox_adds_the_mailto_part(app, factory, smtp_server, monkeypatch):
    settings = app.extensions["settings"].model_copy(
        update={"unsubscribe_mailbox": "optout@ops.example"}
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    message = _received(app, factory, smtp_server, "cy@example.org")
    https, mailto = (part.strip() for part in message["List-Unsubscribe"].split(","))
    token = https.removeprefix("<https://sendfleet.test/u/").removesuffix(">")
    assert token and "/" not in token
    assert mailto == f"<mailto:optout@ops.example?subject=unsubscribe-{token}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "s")
    monkeypatch.setenv("CREDENTIALS_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("COMPANY_ADDRESS", "1 Main Street")
    return monkeypatch


@pytest.mark.parametrize(
    "bad", ["unsubscribe", "a@b", "a b@ops.example", "a@ops.example?x=1", "ä@ops.example"]
)
def test_unsubscribe_mailbox_must_be_an_address(env, bad):
    env.setenv("UNSUBSCRIBE_MAILBOX", bad)
    with pytest.raises(SettingsError, match="UNSUBSCRIBE_MAILBOX"):
        load_settings()


def test_unsubscribe_mailbox_is_optional(env):
    env.delenv("UNSUBSCRIBE_MAILBOX", raising=False)
    assert load_settings().unsubscribe_mailbox is None
    env.setenv("UNSUBSCRIBE_MAILBOX", "  ")
    assert load_settings().unsubscribe_mailbox is None
    env.setenv("UNSUBSCRIBE_MAILBOX", " Optout@Ops.Example ")
    assert load_settings().unsubscribe_mailbox == "Optout@Ops.Example"
