"""The sender-authentication check against a local DNS server (tests/dns_server.py): a
correct setup, a missing DMARC, an SPF that omits the provider, an SPF over 10 lookups,
no DKIM key, own relays with and without a forward-confirmed PTR, a domain whose DNS
never answers. Each is reported with its fix, recorded, and read by the warm-up's
domain_auth_passing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.extensions import db
from app.models import SenderAuthCheck
from app.services.sender_domains import domain_auth_passing
from tests.dns_server import LocalDns, local_dns
from worker import tasks
from worker.jobs import domain_checks

T0 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
RELAY_IP, STRAY_IP = "192.0.2.10", "192.0.2.11"
GOOGLE_SPF = "v=spf1 include:_spf.google.com ~all"


def _dkim_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def _dmarc(domain: str) -> str:
    return f"v=DMARC1; p=quarantine; rua=mailto:reports@{domain}"


def _complete(zones: Any, domain: str, spf: str, selector: str = "google") -> None:
    zones.add(domain, "TXT", spf)
    zones.add(domain, "TXT", "google-site-verification=abc")  # other TXT records are ignored
    zones.add(f"{selector}._domainkey.{domain}", "TXT", KEY)
    zones.add(f"_dmarc.{domain}", "TXT", _dmarc(domain))
    zones.add(domain, "MX", f"mx.{domain}")


KEY = _dkim_key()


@pytest.fixture
def dns() -> Iterator[LocalDns]:
    with local_dns() as server:
        z = server.zones
        z.add("_spf.google.com", "TXT", "v=spf1 include:_netblocks.google.com ~all")
        z.add("_netblocks.google.com", "TXT", "v=spf1 ip4:35.190.247.0/24 ip4:64.233.160.0/19 ~all")
        z.add("sendgrid.net", "TXT", "v=spf1 ip4:167.89.0.0/17 ~all")
        _complete(z, "good.example", GOOGLE_SPF)
        _complete(z, "nodmarc.example", GOOGLE_SPF)
        z.remove("_dmarc.nodmarc.example")
        # A SendGrid account on a domain whose SPF names Google only; its DKIM is SendGrid's
        # CNAME to a key SendGrid hosts.
        _complete(z, "omits.example", GOOGLE_SPF)
        z.remove("google._domainkey.omits.example")
        z.add("s1._domainkey.omits.example", "CNAME", "s1.domainkey.u42.wl.sendgrid.net")
        z.add("s1.domainkey.u42.wl.sendgrid.net", "TXT", KEY)
        many = " ".join(f"include:spf{i}.vendors.example" for i in range(11))
        _complete(z, "toomany.example", f"v=spf1 include:_spf.google.com {many} ~all")
        for i in range(11):
            z.add(f"spf{i}.vendors.example", "TXT", f"v=spf1 ip4:198.51.100.{i} -all")
        _complete(z, "nodkim.example", GOOGLE_SPF)
        z.remove("google._domainkey.nodkim.example")
        # Own relays: SPF names the relay by its A record; one IP's PTR resolves back.
        _complete(z, "relay.example", "v=spf1 a:mail.relay.example -all", selector="mail")
        z.add("mail.relay.example", "A", RELAY_IP)
        z.add("10.2.0.192.in-addr.arpa", "PTR", "mail.relay.example")
        z.add("11.2.0.192.in-addr.arpa", "PTR", "unrelated.example")
        z.silence("silent.example")
        yield server


def _use(app: Any, monkeypatch: Any, dns: LocalDns, **changes: Any) -> None:
    settings = app.extensions["settings"].model_copy(
        update={
            "sender_auth_nameservers": [dns.nameserver],
            "sender_auth_timeout_seconds": 0.3,
            "dkim_selectors": ["google", "s1"],
            "sending_ips": [RELAY_IP],
            **changes,
        }
    )
    monkeypatch.setitem(app.extensions, "settings", settings)


@pytest.fixture
def checked(app, factory, monkeypatch, dns) -> dict[str, SenderAuthCheck]:
    _use(app, monkeypatch, dns)
    for domain in ("good", "nodmarc", "toomany", "nodkim"):
        factory.create_account(provider="gmail", email=f"a@{domain}.example")
    factory.create_account(provider="sendgrid", email="b@omits.example")
    factory.create_account(provider="postfix", email="c@relay.example", dkim_selector="mail")
    factory.create_account(email="d@relay.example", sending_ip=STRAY_IP)
    factory.create_account(provider="gmail", email="e@silent.example")
    factory.create_account(provider="gmail", email="someone@gmail.com")  # not our DNS
    run = domain_checks.run_sender_auth_check(now=T0)
    assert sorted(run.checked) == sorted(
        f"{d}.example" for d in ("good", "nodmarc", "omits", "toomany", "nodkim", "relay", "silent")
    )
    return {c.domain: c for c in db.session.query(SenderAuthCheck).all()}


def _verdicts(check: SenderAuthCheck) -> dict[str, str | None]:
    return {k: getattr(check, k) for k in ("spf", "dkim", "dmarc", "mx", "ptr")}


def test_a_correct_setup_passes_everything(checked):
    good = checked["good.example"]
    assert _verdicts(good) == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "mx": "pass",
                               "ptr": None}  # fmt: skip
    assert good.results["spf"]["found"] == GOOGLE_SPF
    assert good.results["spf"]["details"]["required"] == ["include:_spf.google.com"]
    assert good.results["dkim"]["found"] == "google._domainkey.good.example"
    assert good.results["dmarc"]["details"] == {
        "policy": "quarantine",
        "rua": ["reports@good.example"],
    }
    assert good.results["mx"]["found"] == "mx.good.example"
    assert domain_auth_passing(db.session, "good.example") is True


def test_a_missing_dmarc_fails_with_the_record_to_publish(checked):
    check = checked["nodmarc.example"]
    assert _verdicts(check)["dmarc"] == "fail" and check.spf == check.dkim == "pass"
    assert check.results["dmarc"]["fix"] == (
        'publish the TXT record _dmarc.nodmarc.example "v=DMARC1; p=none; '
        'rua=mailto:dmarc@nodmarc.example"'
    )
    assert domain_auth_passing(db.session, "nodmarc.example") is True  # SPF and DKIM pass


def test_an_spf_that_omits_the_provider_fails_with_the_corrected_record(checked):
    check = checked["omits.example"]
    assert check.spf == "fail" and check.dkim == "pass"  # DKIM through SendGrid's CNAME
    spf = check.results["spf"]
    assert spf["problem"] == "the SPF record does not cover include:sendgrid.net"
    assert spf["fix"] == (
        "replace the TXT record of omits.example with "
        '"v=spf1 include:_spf.google.com include:sendgrid.net ~all"'
    )
    assert domain_auth_passing(db.session, "omits.example") is False


def test_an_spf_over_ten_lookups_fails(checked):
    check = checked["toomany.example"]
    spf = check.results["spf"]
    assert check.spf == "fail" and spf["details"]["dns_lookups"] == 13
    assert "13 DNS lookups, more than the 10" in spf["problem"]
    assert '"v=spf1 include:_spf.google.com ~all"' in spf["fix"]


def test_no_dkim_key_fails_with_the_providers_steps(checked):
    check = checked["nodkim.example"]
    assert check.dkim == "fail" and check.spf == "pass"
    dkim = check.results["dkim"]
    assert dkim["problem"] == "no DKIM key at any selector checked (google, s1)"
    assert "google._domainkey.nodkim.example" in dkim["fix"] and "Admin console" in dkim["fix"]
    assert domain_auth_passing(db.session, "nodkim.example") is False


def test_own_relays_need_their_ips_in_spf_and_a_forward_confirmed_ptr(checked):
    check = checked["relay.example"]
    spf = check.results["spf"]
    # The relay (SENDING_IPS, a Postfix account) is covered through a:mail.relay.example;
    # the other account's declared IP is not.
    assert spf["details"]["required"] == [f"ip4:{RELAY_IP}", f"ip4:{STRAY_IP}"]
    assert spf["details"]["missing"] == [f"ip4:{STRAY_IP}"]
    assert spf["fix"].endswith(f'"v=spf1 a:mail.relay.example ip4:{STRAY_IP} -all"')
    assert check.dkim == "pass"  # the account's own selector, "mail"
    ptr = check.results["ptr"]
    assert check.ptr == "fail"
    assert ptr["details"][RELAY_IP] == {
        "ptr": ["mail.relay.example"],
        "confirmed": ["mail.relay.example"],
    }
    assert ptr["details"][STRAY_IP]["confirmed"] == []
    assert ptr["problem"] == f"no forward-confirmed PTR for {STRAY_IP}"
    assert f"pointing at {STRAY_IP}" in ptr["fix"]


def test_a_domain_whose_dns_does_not_answer_is_unknown_not_failed(checked):
    check = checked["silent.example"]
    assert _verdicts(check) == {"spf": "unknown", "dkim": "unknown", "dmarc": "unknown",
                                "mx": "unknown", "ptr": None}  # fmt: skip
    assert "DNS did not answer" in check.results["spf"]["problem"]
    assert domain_auth_passing(db.session, "silent.example") is None
    assert "gmail.com" not in checked


def test_a_new_failure_alerts_the_domains_clients_once(
    app, factory, monkeypatch, dns, redis_client
):
    _use(app, monkeypatch, dns)
    other = factory.create_client(name="Other")
    factory.create_account(provider="gmail", email="a@nodkim.example")
    factory.create_account(provider="gmail", email="b@nodkim.example", client_id=other.id)
    factory.create_account(provider="gmail", email="c@good.example")
    run = domain_checks.run_sender_auth_check(now=T0)
    keys = sorted(key for key, _, _ in run.alerts)
    assert keys == ["sender-auth-dns:1:nodkim.example:dkim",
                    f"sender-auth-dns:{other.id}:nodkim.example:dkim"]  # fmt: skip
    assert all(redis_client.exists(f"sf:alert:{key}") for key in keys)
    text = run.alerts[0][1]
    assert text.startswith("Sender authentication of nodkim.example fails. DKIM: no DKIM key")
    again = domain_checks.run_sender_auth_check(now=T0 + timedelta(days=1))
    assert again.alerts == [] and again.failing == {"nodkim.example": ["dkim"]}


def test_the_daily_task_records_every_own_domain(app, factory, monkeypatch, dns):
    _use(app, monkeypatch, dns)
    factory.create_account(provider="gmail", email="a@good.example")
    factory.create_account(provider="sendgrid", email="b@omits.example")
    with app.app_context():
        tasks.sender_auth_check()  # the shim beat calls by name
    recorded = {c.domain: (c.spf, c.dkim) for c in db.session.query(SenderAuthCheck).all()}
    assert recorded == {"good.example": ("pass", "pass"), "omits.example": ("fail", "pass")}
