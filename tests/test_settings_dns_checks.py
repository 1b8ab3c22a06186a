"""The DNS-check settings: lists, relays, resolvers (IP:PORT) and selectors, read from
the environment and refused at start-up when malformed, naming the variable."""

from __future__ import annotations

import os

import pytest

from app.settings import SettingsError, load_settings
from tests.test_settings import REQUIRED

OURS = ("DNSBL_", "SENDING_IPS", "SENDER_AUTH_", "DKIM_")


@pytest.fixture
def env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(OURS):
            monkeypatch.delenv(key, raising=False)
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_check_spamhaus_spamcop_barracuda_and_surbl(env):
    settings = load_settings()
    assert settings.dnsbl_ip_lists == [
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "b.barracudacentral.org",
    ]
    assert settings.dnsbl_domain_lists == ["dbl.spamhaus.org", "multi.surbl.org"]
    assert settings.sending_ips == [] and settings.dnsbl_nameservers == []
    assert "google" in settings.dkim_selectors and "s1" in settings.dkim_selectors
    assert (settings.dnsbl_timeout_seconds, settings.dnsbl_tries) == (5, 2)


def test_values_come_from_the_environment(env):
    env.setenv("DNSBL_NAMESERVERS", "127.0.0.1:5353, 10.0.0.53:5353")
    env.setenv("SENDER_AUTH_NAMESERVERS", "[2001:db8::53]:53,9.9.9.9")
    env.setenv("SENDING_IPS", "192.0.2.1, 2001:DB8::25")
    env.setenv("DNSBL_IP_LISTS", "zen.spamhaus.org")
    env.setenv("DKIM_SELECTORS", "s1,Mail")
    settings = load_settings()
    assert settings.dnsbl_nameservers == ["127.0.0.1:5353", "10.0.0.53:5353"]
    assert settings.sender_auth_nameservers == ["2001:db8::53", "9.9.9.9"]
    assert settings.sending_ips == ["192.0.2.1", "2001:db8::25"]
    assert settings.dnsbl_ip_lists == ["zen.spamhaus.org"]
    assert settings.dkim_selectors == ["s1", "mail"]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("DNSBL_NAMESERVERS", "resolver.example", "is not an IP address"),
        ("DNSBL_NAMESERVERS", "127.0.0.1:5353,127.0.0.2:53", "the same port"),
        ("SENDER_AUTH_NAMESERVERS", "1.2.3.4:0", "the port must be"),
        ("SENDING_IPS", "192.0.2.300", "IP addresses"),
        ("DNSBL_DOMAIN_LISTS", "dbl spamhaus org", "is not a DNS name"),
        ("DKIM_SELECTORS", "s1,bad selector", "is not a DNS name"),
        ("DNSBL_TIMEOUT_SECONDS", "0", "greater than 0"),
    ],
)
def test_a_malformed_value_stops_the_start_naming_it(env, name, value, words):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as stop:
        load_settings()
    assert f"{name}:" in str(stop.value) and words in str(stop.value)
