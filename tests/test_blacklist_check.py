"""The daily blacklist check against a local DNS server (tests/dns_server.py) serving test
lists: a listed IP, a clean IP, a listed domain, NXDOMAIN, a list that never answers, a
resolver that refuses or fails, and Spamhaus's 127.255.255.254 "public resolver" answer.
pydnsbl queries it through DNSBL_NAMESERVERS as IP:PORT."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from app.extensions import db
from app.models import Account, BlacklistCheck, Event
from app.services.blacklist import account_blacklisted
from tests.dns_server import LocalDns, local_dns, tcp_query
from tests.test_alerts import FakeBotApi
from worker import tasks
from worker.jobs import blacklist

LISTED_IP, CLEAN_IP, REFUSED_IP, PUBLIC_RESOLVER_IP = (
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "192.0.2.4",
)
T0 = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)


def _reversed(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


@pytest.fixture
def dns() -> Iterator[LocalDns]:
    with local_dns() as server:
        zones = server.zones
        zones.add(f"{_reversed(LISTED_IP)}.ips.bl.test", "A", "127.0.0.2")
        zones.add(f"{_reversed(LISTED_IP)}.zen.bl.test", "A", "127.0.0.3")
        zones.add(f"{_reversed(PUBLIC_RESOLVER_IP)}.zen.bl.test", "A", "127.255.255.254")
        zones.refuse(f"{_reversed(REFUSED_IP)}.ips.bl.test")
        zones.servfail(f"{_reversed(REFUSED_IP)}.zen.bl.test")
        zones.add("listed.example.dbl.bl.test", "A", "127.0.1.2")
        zones.silence("dead.bl.test")
        yield server


def _use(app: Any, monkeypatch: Any, dns: LocalDns, **changes: Any) -> Any:
    settings = app.extensions["settings"].model_copy(
        update={
            "dnsbl_nameservers": [dns.nameserver],
            "dnsbl_ip_lists": ["ips.bl.test", "zen.bl.test"],
            "dnsbl_domain_lists": ["dbl.bl.test"],
            "dnsbl_timeout_seconds": 0.5,
            "dnsbl_tries": 1,
            "sending_ips": [LISTED_IP, CLEAN_IP],
            **changes,
        }
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    return settings


@pytest.fixture
def sent_alerts(monkeypatch: Any) -> list[tuple[str, str, int | None]]:
    """Every alert the job raises, on its way to the real notify (dedup keys in Redis)."""
    seen: list[tuple[str, str, int | None]] = []
    real = blacklist.alerts.notify

    def spy(key: str, text: str, *, client_id: int | None = None) -> bool:
        seen.append((key, text, client_id))
        return real(key, text, client_id=client_id)

    monkeypatch.setattr(blacklist.alerts, "notify", spy)
    return seen


def _world(factory: Any) -> dict[str, Account]:
    other = factory.create_client(name="Other Client")
    return {
        "relay": factory.create_account(provider="postfix", email="a@relay.example"),
        "relay_other_client": factory.create_account(
            provider="postfix", email="b@relay-two.example", client_id=other.id
        ),
        "own_clean_ip": factory.create_account(email="c@ok.example", sending_ip=CLEAN_IP),
        "refused_ip": factory.create_account(email="d@ok.example", sending_ip=REFUSED_IP),
        "public_resolver_ip": factory.create_account(
            email="e@ok.example", sending_ip=PUBLIC_RESOLVER_IP
        ),
        "listed_domain": factory.create_account(email="f@listed.example", client_id=other.id),
        "gmail": factory.create_account(provider="gmail", email="someone@gmail.com"),
        "operator_paused": factory.create_account(
            email="g@listed.example", status="paused", paused_by="operator",
            paused_reason="held by hand",
        ),
    }  # fmt: skip


def _state(account: Account) -> tuple[str, str | None, datetime | None]:
    db.session.refresh(account)
    return account.status, account.paused_by, account.paused_until


def _latest(target: str) -> BlacklistCheck:
    return (
        db.session.query(BlacklistCheck)
        .filter_by(target=target)
        .order_by(BlacklistCheck.id.desc())
        .first()
    )


def test_the_local_dns_server_answers_over_udp_and_tcp(dns):
    answer = tcp_query(dns.port, f"{_reversed(LISTED_IP)}.ips.bl.test")
    assert [str(rr.rdata) for rr in answer.rr] == ["127.0.0.2"]
    assert dns.zones.queries[(f"{_reversed(LISTED_IP)}.ips.bl.test", "A")] == 1


def test_the_check_finds_exactly_the_listed_targets_and_calls_the_rest_unknown(
    app, factory, monkeypatch, dns, sent_alerts
):
    _use(app, monkeypatch, dns)
    _world(factory)
    run = blacklist.run_blacklist_check(now=T0)

    assert sorted(run.listed) == [LISTED_IP, "listed.example"]
    assert sorted(run.unknown) == [REFUSED_IP, PUBLIC_RESOLVER_IP]
    statuses = {
        c.target: c.status for c in db.session.query(BlacklistCheck).all()
    }  # one row per target
    assert statuses == {
        LISTED_IP: "listed",
        CLEAN_IP: "clean",
        REFUSED_IP: "unknown",
        PUBLIC_RESOLVER_IP: "unknown",
        "listed.example": "listed",
        "relay.example": "clean",
        "relay-two.example": "clean",
        "ok.example": "clean",
    }
    listed_ip = _latest(LISTED_IP)
    assert listed_ip.lists_hit == ["ips.bl.test", "zen.bl.test"] and listed_ip.listed
    assert listed_ip.list_results["ips.bl.test"]["answers"] == ["127.0.0.2"]
    public = _latest(PUBLIC_RESOLVER_IP)
    assert public.lists_hit == [] and not public.listed
    assert "127.255.255.254" in public.note and "resolver of your own" in public.note
    refused = _latest(REFUSED_IP)
    assert {r["status"] for r in refused.list_results.values()} == {"unknown"}
    assert "did not answer" in refused.note


def test_a_listing_pauses_what_it_concerns_and_alerts_each_client(
    app, factory, monkeypatch, dns, sent_alerts, redis_client
):
    _use(app, monkeypatch, dns)
    accounts = _world(factory)
    run = blacklist.run_blacklist_check(now=T0)

    paused = {name for name, a in accounts.items() if a.id in run.paused}
    assert paused == {"relay", "relay_other_client", "listed_domain"}
    for name in paused:
        account = accounts[name]
        assert _state(account) == ("paused", "blacklist", None)
        assert account.pause_details["targets"]
    relay = accounts["relay"]
    assert relay.paused_reason == f"blacklisted: {LISTED_IP} on ips.bl.test, zen.bl.test"
    assert relay.pause_details["targets"][LISTED_IP]["answers"] == {
        "ips.bl.test": ["127.0.0.2"],
        "zen.bl.test": ["127.0.0.3"],
    }
    assert accounts["listed_domain"].paused_reason == "blacklisted: listed.example on dbl.bl.test"
    assert "previous" not in relay.pause_details  # it was active
    for name in ("own_clean_ip", "refused_ip", "public_resolver_ip", "gmail"):
        assert _state(accounts[name]) == ("active", None, None), name
    assert _state(accounts["operator_paused"]) == ("paused", "operator", None)
    assert accounts["operator_paused"].paused_reason == "held by hand"
    events = db.session.query(Event).filter_by(type="account_paused").all()
    assert sorted(e.account_id for e in events) == sorted(run.paused)
    assert account_blacklisted(db.session, relay.id) is True
    assert account_blacklisted(db.session, accounts["refused_ip"].id) is False

    other = accounts["listed_domain"].client_id
    keys = {key: client for key, _, client in sent_alerts}
    assert keys == {
        f"blacklist:listed:1:{LISTED_IP}": 1,
        f"blacklist:listed:{other}:{LISTED_IP}": other,
        f"blacklist:listed:{other}:listed.example": other,
        # Client 1's account on it was paused by hand: told, not touched.
        "blacklist:listed:1:listed.example": 1,
        "blacklist:unknown": None,
    }
    for key in keys:
        assert redis_client.exists(f"sf:alert:{key}"), key
    text = next(t for k, t, _ in sent_alerts if k == f"blacklist:listed:1:{LISTED_IP}")
    assert f"#{relay.id}" in text and f"#{accounts['relay_other_client'].id}" not in text
    assert "check.spamhaus.org" not in text  # test lists: the generic advice
    unknown = next(t for k, t, _ in sent_alerts if k == "blacklist:unknown")
    assert REFUSED_IP in unknown and "127.255.255.254" in unknown

    # The next day, still listed: nothing new to say, nothing changes.
    sent_alerts.clear()
    again = blacklist.run_blacklist_check(now=T0 + timedelta(days=1))
    assert again.paused == [] and again.newly_listed == [] and again.released == []
    assert [k for k, _, _ in sent_alerts] == ["blacklist:unknown"]


def test_a_delisting_hands_the_accounts_to_the_health_check_and_alerts(
    app, factory, monkeypatch, dns, sent_alerts
):
    _use(app, monkeypatch, dns)
    accounts = _world(factory)
    blacklist.run_blacklist_check(now=T0)

    # The domain list stops answering: the domain is unknown, not delisted.
    _use(app, monkeypatch, dns, dnsbl_domain_lists=["dbl.bl.test", "dead.bl.test"])
    dns.zones.remove(f"{_reversed(LISTED_IP)}.ips.bl.test")
    dns.zones.remove(f"{_reversed(LISTED_IP)}.zen.bl.test")
    dns.zones.remove("listed.example.dbl.bl.test")
    sent_alerts.clear()
    later = T0 + timedelta(days=1)
    run = blacklist.run_blacklist_check(now=later)
    assert run.delisted == [LISTED_IP]
    # Postfix accounts stand on relay.example, now unknown too (the dead list): held.
    assert run.released == []
    assert _latest("listed.example").status == "unknown"
    assert _state(accounts["listed_domain"]) == ("paused", "blacklist", None)

    # Every list answers again and says clean: each account goes to the health check.
    _use(app, monkeypatch, dns)
    sent_alerts.clear()
    last = T0 + timedelta(days=2)
    run = blacklist.run_blacklist_check(now=last)
    released = {name for name, a in accounts.items() if a.id in run.released}
    assert released == {"relay", "relay_other_client", "listed_domain"}
    for name in released:
        assert _state(accounts[name]) == ("paused", "blacklist", last)
    assert _state(accounts["operator_paused"]) == ("paused", "operator", None)
    other = accounts["listed_domain"].client_id
    assert sorted(k for k, _, _ in sent_alerts) == sorted(
        [
            "blacklist:unknown",
            f"blacklist:delisted:{other}:listed.example",
            "blacklist:delisted:1:listed.example",  # the operator's own pause: told only
        ]
    )
    assert account_blacklisted(db.session, accounts["relay"].id) is False

    # A new listing while the health check has not returned them yet pauses them again.
    dns.zones.add(f"{_reversed(LISTED_IP)}.ips.bl.test", "A", "127.0.0.2")
    run = blacklist.run_blacklist_check(now=last + timedelta(days=1))
    assert {a for a in run.paused} == {accounts["relay"].id, accounts["relay_other_client"].id}
    assert _state(accounts["relay"]) == ("paused", "blacklist", None)
    assert accounts["relay"].pause_details["previous"]["paused_by"] == "blacklist"
    assert accounts["relay"].pause_details["previous"]["paused_until"].startswith("2026-12-04")


def test_without_any_account_or_relay_there_is_nothing_to_check(app, app_context, monkeypatch, dns):
    _use(app, monkeypatch, dns, sending_ips=[])
    run = blacklist.run_blacklist_check(now=T0)
    assert run.checked == 0 and db.session.query(BlacklistCheck).count() == 0


def test_the_daily_task_pauses_and_its_alert_reaches_the_clients_telegram_chat(
    app, factory, monkeypatch, dns
):
    """The shim beat calls, then the alert task, delivered to a local Bot API stand-in."""
    bot = FakeBotApi({"ok": True, "result": {"message_id": 1}})
    try:
        _use(
            app, monkeypatch, dns,
            telegram_bot_token=SecretStr("42:token"), telegram_chat_id="-100",
            telegram_api_base=bot.base,
        )  # fmt: skip
        queued: list[list[str]] = []

        class Broker:
            def send_task(self, name: str, args: list[str], queue: str) -> None:
                assert name == "sendfleet.telegram"
                queued.append(args)

        monkeypatch.setattr(blacklist.alerts, "current_celery", Broker())
        brand = factory.create_client(name="Brand", telegram_chat_id="-100777")
        account = factory.create_account(email="x@listed.example", client_id=brand.id)
        with app.app_context():
            tasks.blacklist_check()
            for args in queued:
                tasks.telegram.apply(args=args).get()
        assert _state(account) == ("paused", "blacklist", None)
        chats = {r[1]["chat_id"]: r[1]["text"] for r in bot.requests}
        assert "listed.example is listed on dbl.bl.test" in chats["-100777"]
        assert chats["-100777"].startswith("[Brand] Blacklist:")
    finally:
        bot.close()
