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


TIMING_VARS = (
    "SEND_LEASE_SECONDS",
    "QUEUED_STALE_SECONDS",
    "RECOVERY_INTERVAL_SECONDS",
    "SMTP_TIMEOUT_SECONDS",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_TTL_SECONDS",
)


@pytest.fixture
def timing_env(env):
    for key in TIMING_VARS:
        env.delenv(key, raising=False)
    return env


def test_default_timings_recover_a_dead_holder_within_a_minute(timing_env):
    settings = load_settings()
    assert (settings.heartbeat_interval_seconds, settings.heartbeat_ttl_seconds) == (5, 15)
    assert settings.recovery_interval_seconds == 15
    # Key expired one TTL after the last beat, seen missing on the next pass, confirmed on
    # the one after (at least two beats later): TTL + 2 passes.
    assert 2 * settings.heartbeat_interval_seconds <= settings.recovery_interval_seconds
    assert settings.heartbeat_ttl_seconds + 2 * settings.recovery_interval_seconds <= 60
    # The lease (rows of older versions only) covers a whole message at the SMTP timeouts.
    assert (settings.send_lease_seconds, settings.smtp_timeout_seconds) == (600, 30)
    assert settings.queued_stale_seconds == 300


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"SEND_LEASE_SECONDS": "300"}, ["SEND_LEASE_SECONDS", "SMTP_TIMEOUT_SECONDS"]),
        ({"SMTP_TIMEOUT_SECONDS": "60"}, ["SEND_LEASE_SECONDS", "SMTP_TIMEOUT_SECONDS"]),
        (
            {"HEARTBEAT_TTL_SECONDS": "5"},
            ["HEARTBEAT_TTL_SECONDS", "HEARTBEAT_INTERVAL_SECONDS"],
        ),
        (
            {"HEARTBEAT_INTERVAL_SECONDS": "10", "HEARTBEAT_TTL_SECONDS": "15"},
            ["HEARTBEAT_TTL_SECONDS", "HEARTBEAT_INTERVAL_SECONDS"],
        ),
    ],
)
def test_timings_that_contradict_each_other_stop_start_up_naming_them(timing_env, values, names):
    for key, value in values.items():
        timing_env.setenv(key, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    for name in names:
        assert name in str(raised.value)
    assert "?" not in str(raised.value)


def test_timings_that_agree_are_accepted(timing_env):
    timing_env.setenv("SMTP_TIMEOUT_SECONDS", "10")
    timing_env.setenv("SEND_LEASE_SECONDS", "160")  # 10 s x 16 steps
    timing_env.setenv("HEARTBEAT_INTERVAL_SECONDS", "2")
    timing_env.setenv("HEARTBEAT_TTL_SECONDS", "4")
    settings = load_settings()
    assert (settings.send_lease_seconds, settings.heartbeat_ttl_seconds) == (160, 4)


@pytest.mark.parametrize(
    "command",
    [
        ["flask", "--app", "app", "keys", "list"],
        ["celery", "-A", "worker", "worker", "--pool", "solo"],
    ],
)
def test_contradicting_timings_stop_the_cli_and_the_worker(settings_env, command):
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **{k: v for k, v in os.environ.items() if k not in TIMING_VARS},
        **settings_env,
        "SMTP_TIMEOUT_SECONDS": "60",
    }
    result = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SEND_LEASE_SECONDS (600) must be at least SMTP_TIMEOUT_SECONDS (60)" in result.stderr
