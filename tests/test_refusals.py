"""Refusals classified by what they are about, through the real send path and dispatcher
against real SMTP servers: who bears each refusal (recipient, its domain, the campaign, the
sending domain, the account)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Campaign, DomainBackoff, Event, Recipient, Suppression
from tests.pipeline import dispatch, run_until_idle, send_batches, smtp_account

ACCESS_DENIED = "5.7.1 <{}>: Recipient address rejected: Access denied"


@pytest.fixture
def alerts_sent(monkeypatch):
    sent: list[tuple[str, str]] = []
    from worker.jobs import alerts

    real = alerts.notify

    def notify(key: str, text: str, **kwargs: object) -> bool:
        sent.append((key, text))
        return real(key, text, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(alerts, "notify", notify)
    return sent


def _recipient(email: str) -> Recipient:
    db.session.expire_all()
    return db.session.execute(select(Recipient).where(Recipient.email == email)).scalar_one()


def _account(account_id: int) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account_id)


def _campaign(campaign_id: int) -> Campaign:
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def _statuses() -> Counter[str]:
    db.session.expire_all()
    return Counter(r.status for r in db.session.execute(select(Recipient)).scalars())


def _events(kind: str) -> list[Event]:
    return db.session.execute(select(Event).where(Event.type == kind)).scalars().all()


def _running(factory, emails, **overrides):
    campaign = factory.create_campaign(status="running", **overrides)
    factory.create_recipients(campaign, emails)
    return campaign


def _due_now() -> None:
    db.session.execute(Recipient.__table__.update().values(next_attempt_at=None))
    db.session.execute(DomainBackoff.__table__.delete())
    db.session.commit()


# --- about the recipient -------------------------------------------------------------------


def test_an_access_map_refusal_fails_that_address_alone_and_pauses_no_account(
    app, factory, smtp_servers
):
    first, second, _ = smtp_servers
    accounts = [factory.create_account(**smtp_account(s), daily_limit=100) for s in (first, second)]
    emails = [f"u{i}@example.org" for i in range(6)] + ["blocked@example.org"]
    _running(factory, emails)
    for server in (first, second):
        server.fail_rcpt("blocked@example.org", 554, ACCESS_DENIED.format("blocked@example.org"))
    run_until_idle(app)
    blocked = _recipient("blocked@example.org")
    assert blocked.status == "failed" and blocked.last_smtp_code == 554
    assert blocked.attempts == 1 and blocked.handbacks == 0  # tried once, on one account
    assert _statuses() == {"sent": 6, "failed": 1}
    for account in accounts:
        row = _account(account.id)
        assert (row.status, row.consecutive_failures) == ("active", 0)
    assert db.session.execute(select(Suppression)).scalars().all() == []  # may exist: not a bounce
    assert _events("account_paused") == []


def test_unknown_mailbox_bounces_and_is_suppressed_while_the_account_stays(
    app, factory, smtp_server
):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["gone@example.org", "here@example.org"])
    smtp_server.fail_rcpt("gone@example.org", 550, "5.1.1 The email account does not exist")
    run_until_idle(app)
    assert _recipient("gone@example.org").status == "bounced"
    assert db.session.execute(select(Suppression.value)).scalars().all() == ["gone@example.org"]
    assert _account(account.id).status == "active"


def test_mailbox_full_is_retried_then_failed_and_never_suppressed(
    app, factory, smtp_server, settings
):
    account = factory.create_account(**smtp_account(smtp_server), per_minute_limit=100)
    _running(factory, ["full@example.org"])
    smtp_server.fail_rcpt("full@example.org", 552, "5.2.2 The email account is over quota")
    run_until_idle(app)
    row = _recipient("full@example.org")
    assert row.status == "deferred" and row.next_attempt_at is not None
    for _ in range(len(settings.retry_delays_seconds)):
        _due_now()
        run_until_idle(app)
    row = _recipient("full@example.org")
    assert row.status == "failed" and row.attempts == len(settings.retry_delays_seconds) + 1
    assert db.session.execute(select(Suppression)).scalars().all() == []
    assert (_account(account.id).status, _account(account.id).consecutive_failures) == (
        "active",
        0,
    )


def test_an_unexplained_5xx_fails_the_recipient_and_counts_toward_the_streak(
    app, factory, smtp_server
):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, [f"u{i}@example.org" for i in range(5)])
    smtp_server.script(lambda rcpt, attempt: (554, "5.7.1 Rejected"))
    run_until_idle(app)
    # Three recipients failed, then the streak paused the account: the list is not burnt.
    assert _statuses() == {"failed": 3, "pending": 2}
    paused = _account(account.id)
    assert paused.status == "paused" and "3 consecutive failures" in paused.paused_reason


def test_most_recipients_refused_across_domains_pauses_the_account(app, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server), per_minute_limit=100)
    domains = ["a.example", "b.example", "c.example", "d.example"]
    _running(factory, [f"u{i}@{domains[i % 4]}" for i in range(14)])
    # Each refusal alone is about its recipient; all of them, everywhere, is about us.
    smtp_server.script(lambda rcpt, attempt: (554, ACCESS_DENIED.format(rcpt)))
    run_until_idle(app)
    paused = _account(account.id)
    assert paused.status == "paused"
    assert "10 of its last 10 recipients refused across 4 domains" in paused.paused_reason
    assert _statuses() == {"failed": 10, "pending": 4}


# --- about the recipient's domain ----------------------------------------------------------


def test_rcpt_greylisting_defers_slows_the_domain_and_leaves_the_account(
    app, factory, smtp_server, settings
):
    account = factory.create_account(**smtp_account(smtp_server), per_minute_limit=100)
    campaign = factory.create_campaign(status="running")
    factory.create_recipients(campaign, ["first@grey.example"])
    smtp_server.fail_rcpt(
        "first@grey.example", 450, "4.2.0 <first@grey.example>: Recipient address rejected: "
        "Greylisted, see http://postgrey.schweikert.ch/help/grey.example.html", times=1,
    )  # fmt: skip
    before = time.time()
    run_until_idle(app)
    row = _recipient("first@grey.example")
    assert row.status == "deferred"
    backoff = db.session.get(DomainBackoff, (1, "grey.example"))
    base = settings.domain_backoff_seconds
    assert before + base - 2 <= backoff.until.timestamp() <= time.time() + base + 2
    assert (_account(account.id).status, _account(account.id).consecutive_failures) == (
        "active",
        0,
    )
    # New recipients of that domain wait for the back-off (and are not rescanned before
    # it ends); other domains go at once.
    factory.create_recipients(campaign, ["second@grey.example", "other@fine.example"])
    result = dispatch(app)
    assert result.backed_off == 1
    waiting = _recipient("second@grey.example")
    assert waiting.status == "pending" and waiting.next_attempt_at == backoff.until
    assert _recipient("other@fine.example").status == "queued"
    send_batches(app, result)
    assert dispatch(app).claimed == 0  # nothing due: the held row is not claimed again
    # Once it ends, both go and the greylisted one is accepted on its retry.
    _due_now()
    run_until_idle(app)
    assert _statuses() == {"sent": 3}
    assert _recipient("first@grey.example").attempts == 2


def test_a_domain_back_off_doubles_when_refused_again_after_it_ended(app, factory, settings):
    from app.db import unit_of_work
    from worker.jobs.backoffs import slow_down

    now = datetime.now(UTC)
    base = settings.domain_backoff_seconds
    c = factory.create_campaign().id
    with app.app_context(), unit_of_work() as session:
        first = slow_down(session, settings, "busy.example", "450 4.2.0 greylisted", now,
                          campaign_id=c)  # fmt: skip
        during = slow_down(session, settings, "busy.example", "450", now + timedelta(seconds=1),
                           campaign_id=c)  # fmt: skip
        after = now + timedelta(seconds=base + 1)
        second = slow_down(session, settings, "busy.example", "450", after, campaign_id=c)
        quiet = after + timedelta(seconds=settings.domain_backoff_max_seconds * 3)
        reset = slow_down(session, settings, "busy.example", "450", quiet, campaign_id=c)
    assert first == during == now + timedelta(seconds=base)  # a burst is one signal
    assert second == after + timedelta(seconds=2 * base)
    assert reset == quiet + timedelta(seconds=base)


# --- about the content ---------------------------------------------------------------------


def test_content_refusal_fails_the_recipient_only(app, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server))
    campaign = _running(factory, ["a@example.org", "b@example.org", "c@example.org"])
    smtp_server.fail_all(550, "5.7.1 Message content rejected", times=1)
    run_until_idle(app)
    assert _statuses() == {"failed": 1, "sent": 2}
    assert _account(account.id).status == "active"
    assert _campaign(campaign.id).status in ("running", "completed")


def test_content_refused_on_several_accounts_pauses_the_campaign(
    app, factory, smtp_servers, alerts_sent, monkeypatch
):
    first, second, _ = smtp_servers
    accounts = [factory.create_account(**smtp_account(s), daily_limit=100) for s in (first, second)]
    campaign = _running(factory, [f"u{i}@example.org" for i in range(20)])
    # Only the several-accounts rule here: the first account's whole batch is refused
    # before the second account sends.
    guarded = app.extensions["settings"].model_copy(update={"content_guard_refusals": 100})
    monkeypatch.setitem(app.extensions, "settings", guarded)
    for server in (first, second):
        server.fail_all(
            550, "5.7.1 [203.0.113.7] Our system has detected that this message is likely "
            "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has "
            "been blocked.",
        )  # fmt: skip
    run_until_idle(app)
    paused = _campaign(campaign.id)
    assert paused.status == "paused"
    assert "content refused" in paused.paused_reason and "2 account(s)" in paused.paused_reason
    [event] = _events("campaign_paused")
    assert event.campaign_id == campaign.id
    assert event.data["guard"] == "content" and event.data["accounts"] == 2
    # Ten refused on the first account, one on the second; the rest waits for an operator.
    assert _statuses() == {"failed": 11, "pending": 9}
    assert all(_account(a.id).status == "active" for a in accounts)
    assert any(key == f"campaign-paused:{campaign.id}" for key, _ in alerts_sent)


def test_content_refused_many_times_on_one_account_pauses_the_campaign(
    app, factory, smtp_server, settings
):
    account = factory.create_account(**smtp_account(smtp_server))
    campaign = _running(factory, [f"u{i}@example.org" for i in range(8)])
    smtp_server.fail_all(554, "5.7.9 Message not accepted for policy reasons.")
    run_until_idle(app)
    paused = _campaign(campaign.id)
    refusals = settings.content_guard_refusals
    assert paused.status == "paused"
    assert f"content refused {refusals} time(s) on 1 account(s)" in paused.paused_reason
    assert _statuses() == {"failed": refusals, "pending": 8 - refusals}
    assert _account(account.id).status == "active"


# --- about the sending domain --------------------------------------------------------------

UNAUTHENTICATED = (
    "5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires "
    "all senders to authenticate with either SPF or DKIM. Authentication results: DKIM = did "
    "not pass SPF [brand.example] with ip: [203.0.113.7] = did not pass"
)


def test_5_7_26_pauses_every_account_on_the_sending_domain(app, factory, smtp_servers, alerts_sent):
    refusing, sibling_server, other_server = smtp_servers
    refused = factory.create_account(
        **smtp_account(refusing), email="one@brand.example", daily_limit=1000
    )
    sibling = factory.create_account(
        **smtp_account(sibling_server), email="two@brand.example", daily_limit=1
    )
    other = factory.create_account(
        **smtp_account(other_server), email="ops@other.example", daily_limit=100
    )
    _running(factory, ["a@example.org", "b@example.org", "c@example.org"])
    refusing.fail_all(550, UNAUTHENTICATED)
    run_until_idle(app)
    for account in (refused, sibling):
        row = _account(account.id)
        assert row.status == "paused"
        assert "sending domain brand.example failed SPF/DKIM" in row.paused_reason
    assert _account(other.id).status == "active"
    # The refused recipient went back and was sent by the account on another domain.
    assert _statuses() == {"sent": 3}
    handed = [r for r in db.session.execute(select(Recipient)).scalars() if r.handbacks]
    assert len(handed) == 1 and handed[0].attempts == 2
    # The key names the client: the pause (and its alert) is that client's.
    [alert] = [text for key, text in alerts_sent if key == "sender-auth:1:brand.example"]
    assert "SPF record of brand.example" in alert and "_domainkey.brand.example" in alert
    assert not [key for key, _ in alerts_sent if key.startswith("account-paused")]


def test_5_7_26_pauses_the_domain_within_the_client_that_caused_it(
    app, factory, smtp_servers, alerts_sent
):
    refusing, _, other_server = smtp_servers
    refused = factory.create_account(**smtp_account(refusing), email="one@brand.example")
    other_client = factory.create_client(name="Other brand")
    theirs = factory.create_account(
        **smtp_account(other_server), email="two@brand.example", client_id=other_client.id
    )
    _running(factory, ["a@example.org"])
    refusing.fail_all(550, UNAUTHENTICATED)
    run_until_idle(app)
    assert _account(refused.id).status == "paused"
    assert _account(theirs.id).status == "active"
    assert [key for key, _ in alerts_sent if key.startswith("sender-auth")] == [
        "sender-auth:1:brand.example"
    ]


def test_a_freemail_sending_domain_pauses_only_the_refused_account(app, factory, smtp_servers):
    refusing, sibling_server, _ = smtp_servers
    refused = factory.create_account(
        **smtp_account(refusing), email="one@gmail.com", provider="smtp", daily_limit=1000
    )
    stranger = factory.create_account(
        **smtp_account(sibling_server), email="two@gmail.com", daily_limit=100
    )
    _running(factory, ["a@example.org"])
    refusing.fail_all(550, UNAUTHENTICATED)
    run_until_idle(app)
    assert _account(refused.id).status == "paused"
    assert _account(stranger.id).status == "active"
    assert _recipient("a@example.org").status == "sent"


# --- about the account: bounded hand-backs -------------------------------------------------


def test_hand_backs_are_bounded_by_the_campaign_accounts_and_attempts_are_never_reset(
    app, factory, smtp_servers
):
    first, second, _ = smtp_servers
    a = factory.create_account(**smtp_account(first), daily_limit=1000)
    b = factory.create_account(**smtp_account(second), daily_limit=100)
    _running(factory, ["x@example.org"], account_ids=[a.id, b.id])
    for server in (first, second):
        server.fail_mail(550, "5.7.1 Client host rejected: Access denied")
    run_until_idle(app)
    row = _recipient("x@example.org")
    assert (row.status, row.handbacks, row.attempts) == ("pending", 2, 2)
    # An operator resumes the first account; it refuses again: two accounts, two
    # hand-backs, so the third account-level refusal fails the recipient.
    db.session.execute(Account.__table__.update().where(Account.id == a.id).values(status="active"))
    db.session.commit()
    _due_now()  # it was waiting a minute for an account to come back
    run_until_idle(app)
    row = _recipient("x@example.org")
    assert (row.status, row.handbacks, row.attempts) == ("failed", 2, 3)
    assert row.last_smtp_code == 550 and "Client host rejected" in row.last_smtp_text
    [final] = [e for e in _events("failed") if e.recipient_id == row.id]
    assert final.data["final"] is True and final.data["handbacks"] == 2


def test_hand_backs_never_exceed_max_handbacks(app, factory, smtp_servers, monkeypatch):
    servers = smtp_servers
    for server in servers:
        factory.create_account(**smtp_account(server), daily_limit=100)
        server.fail_mail(550, "5.7.1 Access denied")
    _running(factory, ["x@example.org"])
    capped = app.extensions["settings"].model_copy(update={"max_handbacks": 1})
    monkeypatch.setitem(app.extensions, "settings", capped)
    run_until_idle(app)
    row = _recipient("x@example.org")
    assert (row.status, row.handbacks, row.attempts) == ("failed", 1, 2)


# --- after the dot -------------------------------------------------------------------------


def test_an_unreadable_reply_after_the_dot_is_unknown_and_never_retried(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["maybe@example.org"])
    smtp_server.garble_data_reply(times=1)
    run_until_idle(app)
    assert _recipient("maybe@example.org").status == "unknown"
    _due_now()
    run_until_idle(app)
    assert _recipient("maybe@example.org").status == "unknown"
    assert len(smtp_server.messages_for("maybe@example.org")) == 1


def test_scripted_server_drops_connections_before_the_greeting(smtp_server):
    import smtplib

    smtp_server.drop_connections(lambda n: n == 1)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5)
    with smtplib.SMTP("127.0.0.1", smtp_server.port, timeout=5) as client:
        assert client.noop()[0] == 250
    assert smtp_server.connections == 2


def test_the_api_shows_why_a_guard_paused_the_campaign_and_resume_clears_it(
    app, api, factory, smtp_server
):
    factory.create_account(**smtp_account(smtp_server), daily_limit=100)
    campaign = _running(factory, [f"u{i}@example.org" for i in range(8)])
    smtp_server.fail_all(554, "5.7.1 Message rejected: content policy violation")
    run_until_idle(app)
    shown = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()
    assert shown["status"] == "paused"
    assert "content refused" in shown["paused_reason"]
    assert api.post(f"/api/v1/campaigns/{campaign.id}/resume").get_json()["paused_reason"] is None
    paused = api.post(f"/api/v1/campaigns/{campaign.id}/pause").get_json()
    assert paused["paused_reason"] == "paused by an operator"
