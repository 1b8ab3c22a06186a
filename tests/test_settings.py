"""Settings: read once from the environment, typed, and strict about bad values."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet

from app.settings import Settings, SettingsError, load_settings

REQUIRED = {
    "SECRET_KEY": "s",
    "CREDENTIALS_KEY": Fernet.generate_key().decode(),
    "COMPANY_ADDRESS": "1 Main Street",
}


@pytest.fixture
def env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("LIMIT_", "DISPATCH_", "RETRY_", "FREEMAIL_", "SENDFLEET_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_are_those_of_the_design(env):
    settings = load_settings()
    assert settings.limit_system_per_minute == 100
    assert settings.limit_account_per_minute == 10
    assert settings.limit_sending_domain_per_day == 2000
    assert settings.limit_recipient_domain_per_day == 20
    assert settings.limit_freemail_per_day == 1000
    assert settings.dispatch_interval_seconds == 5
    assert settings.retry_delays_seconds == [300, 900, 3600]
    assert (settings.warmup_start, settings.warmup_step) == (50, 50)
    assert settings.is_freemail("gmail.com") and not settings.is_freemail("corp.example")


def test_comma_separated_lists_are_parsed(env):
    env.setenv("FREEMAIL_DOMAINS", " Mail.Example, other.example ,")
    env.setenv("RETRY_DELAYS_SECONDS", "60,120")
    env.setenv("DNSBL_NAMESERVERS", "127.0.0.1,::1")
    settings = load_settings()
    assert settings.freemail_domains == ["mail.example", "other.example"]
    assert settings.retry_delays_seconds == [60, 120]
    assert settings.dnsbl_nameservers == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RETRY_DELAYS_SECONDS", "60,-1", "RETRY_DELAYS_SECONDS"),
        ("LIMIT_SYSTEM_PER_MINUTE", "-5", "LIMIT_SYSTEM_PER_MINUTE"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL"),
        ("CREDENTIALS_KEY", "not-a-fernet-key", "CREDENTIALS_KEY"),
        ("COMPANY_ADDRESS", "   ", "COMPANY_ADDRESS"),
        ("PUBLIC_BASE_URL", "sendfleet.example", "PUBLIC_BASE_URL"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, name, value, message):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert message in str(raised.value)


def test_production_insists_on_an_https_public_url(env):
    env.setenv("SENDFLEET_ENV", "production")
    env.setenv("PUBLIC_BASE_URL", "http://sendfleet.example")
    with pytest.raises(SettingsError, match="https"):
        load_settings()
    env.setenv("PUBLIC_BASE_URL", "https://sendfleet.example/")
    assert load_settings().public_base_url == "https://sendfleet.example"


def test_secrets_never_show_in_the_settings_repr(env):
    env.setenv("TELEGRAM_BOT_TOKEN", "123:very-secret")
    settings = load_settings()
    assert "very-secret" not in repr(settings)
    assert REQUIRED["CREDENTIALS_KEY"] not in repr(settings)
    assert settings.telegram_bot_token.get_secret_value() == "123:very-secret"


def test_settings_are_frozen(env):
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.limit_system_per_minute = 5  # type: ignore[misc]
    assert isinstance(settings, Settings)
