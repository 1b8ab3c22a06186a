"""The two questions the warm-up ramp asks: does a domain's SPF and DKIM pass, and is an
account blacklisted (its domain or its IP, by the latest check of each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.extensions import db
from app.models import BlacklistCheck, SenderAuthCheck
from app.services.blacklist import account_blacklisted
from app.services.sender_domains import domain_auth_passing

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _auth(domain: str, spf: str, dkim: str, at: datetime) -> None:
    db.session.add(
        SenderAuthCheck(
            domain=domain, spf=spf, dkim=dkim, dmarc="pass", mx="pass", ptr=None, checked_at=at
        )
    )
    db.session.commit()


def _listing(target: str, kind: str, status: str, at: datetime) -> None:
    db.session.add(
        BlacklistCheck(
            target=target,
            target_kind=kind,
            listed=status == "listed",
            lists_hit=["zen.spamhaus.org"] if status == "listed" else [],
            status=status,
            checked_at=at,
        )
    )
    db.session.commit()


def test_domain_auth_passing_follows_the_latest_check(factory):
    assert domain_auth_passing(db.session, "never.example") is None
    _auth("ramp.example", "pass", "pass", T0)
    assert domain_auth_passing(db.session, "ramp.example") is True
    _auth("ramp.example", "pass", "fail", T0 + timedelta(days=1))
    assert domain_auth_passing(db.session, "RAMP.example") is False
    _auth("ramp.example", "unknown", "pass", T0 + timedelta(days=2))
    assert domain_auth_passing(db.session, "ramp.example") is None
    _auth("ramp.example", "unknown", "fail", T0 + timedelta(days=3))
    assert domain_auth_passing(db.session, "ramp.example") is False
    _auth("other.example", "pass", "pass", T0 + timedelta(days=4))
    assert domain_auth_passing(db.session, "ramp.example") is False


def test_account_blacklisted_by_its_domain_or_its_ip_latest_check_only(factory, settings):
    on_relay = factory.create_account(provider="postfix", email="a@relay-dom.example")
    own_ip = factory.create_account(email="b@own-ip.example", sending_ip="192.0.2.9")
    elsewhere = factory.create_account(email="c@elsewhere.example")
    relays = settings.model_copy(update={"sending_ips": ["192.0.2.1"]})

    def listed(account) -> bool:
        return account_blacklisted(db.session, account.id, settings=relays)

    assert [listed(a) for a in (on_relay, own_ip, elsewhere)] == [False, False, False]
    _listing("192.0.2.1", "ip", "listed", T0)
    _listing("192.0.2.9", "ip", "unknown", T0)
    _listing("elsewhere.example", "domain", "listed", T0)
    assert [listed(a) for a in (on_relay, own_ip, elsewhere)] == [True, False, True]
    _listing("192.0.2.1", "ip", "clean", T0 + timedelta(hours=1))
    _listing("elsewhere.example", "domain", "unknown", T0 + timedelta(hours=1))
    assert [listed(a) for a in (on_relay, own_ip, elsewhere)] == [False, False, False]
    assert account_blacklisted(db.session, 999999, settings=relays) is False
