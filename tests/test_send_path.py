"""The send path in-process against real SMTP servers: claims, outcomes, account health."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Account, Campaign, Event, Recipient, Suppression
from rotator.limiter import Limiter, Scope, Window
from tests.pipeline import dispatch, run_until_idle, send_batches, smtp_account
from worker.jobs import send


@pytest.fixture
def request_cleanup():
    callbacks = []
    yield callbacks
    for callback in callbacks:
        callback()


def _recipient(email: str) -> Recipient:
    db.session.expire_all()
    return db.session.execute(select(Recipient).where(Recipient.email == email)).scalar_one()


def _account(account_id: int) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account_id)


def _events(kind: str) -> list[Event]:
    return db.session.execute(select(Event).where(Event.type == kind)).scalars().all()


def _running(factory, emails, **overrides):
    campaign = factory.create_campaign(status="running", **overrides)
    factory.create_recipients(campaign, emails)
    return campaign


def test_a_sent_message_is_recorded_with_its_message_id(app, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["ann@example.org"])
    run_until_idle(app)
    row = _recipient("ann@example.org")
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 1
    assert row.last_smtp_code == 250 and row.account_id == account.id
    [received] = smtp_server.messages_for("ann@example.org")
    assert received.message_id == row.message_id
    assert received.envelope_from == account.email
    assert [e.recipient_id for e in _events("sent")] == [row.id]


def test_the_message_carries_personalisation_and_compliance_headers(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server), from_name="Ops Team")
    campaign = factory.create_campaign(
        status="running",
        subject="Hi {{ first_name }}",
        body_text="Hello {{ first_name }} from {{ company | default('us') }}",
        body_html="<p>Hello <b>{{ first_name }}</b></p>",
    )
    factory.create_recipients(campaign, ["bo@example.org"], fields={"first_name": "Bo"})
    run_until_idle(app)
    [received] = smtp_server.messages_for("bo@example.org")
    message = message_from_bytes(received.data, policy=default_policy)
    assert message["Subject"] == "Hi Bo"
    assert message["From"].addresses[0].display_name == "Ops Team"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://sendfleet.test/u/" in message["List-Unsubscribe"]
    assert "mailto:" not in message["List-Unsubscribe"]  # no UNSUBSCRIBE_MAILBOX set
    assert message["Date"] is not None
    text = message.get_body(("plain",)).get_content()
    assert "Hello Bo from us" in text
    assert "1 Test Street" in text  # COMPANY_ADDRESS footer
    assert "<b>Bo</b>" in message.get_body(("html",)).get_content()


def test_a_duplicated_task_sends_once(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["dup@example.org"])
    result = dispatch(app)
    first = send_batches(app, result)
    second = send_batches(app, result)
    assert len(smtp_server.messages_for("dup@example.org")) == 1
    assert first[0].outcomes == {"sent": 1}
    assert second[0].duplicates == 1 and second[0].outcomes == {}


def test_send_message_by_recipient_id_sends_once(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["one@example.org"])
    dispatch(app)
    row_id = _recipient("one@example.org").id
    with app.app_context():
        assert send.send_one(row_id).outcomes == {"sent": 1}
        assert send.send_one(row_id).duplicates == 1
    assert len(smtp_server.messages_for("one@example.org")) == 1


def test_421_defers_with_the_first_backoff_delay(app, factory, smtp_server, settings):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["later@example.org"])
    smtp_server.fail_all(421, "4.7.0 Try again later", times=1)
    before = time.time()
    run_until_idle(app)
    row = _recipient("later@example.org")
    assert row.status == "deferred" and row.attempts == 1 and row.last_smtp_code == 421
    delay = settings.retry_delays_seconds[0]
    assert before + delay - 1 <= row.next_attempt_at.timestamp() <= time.time() + delay + 1
    # A 4xx after the dot is about that message: the session worked, the account is untouched.
    assert _account(account.id).consecutive_failures == 0
    assert smtp_server.messages_for("later@example.org") == []


def test_a_deferred_recipient_is_retried_and_sent(app, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["later@example.org"])
    smtp_server.fail_all(421, "4.7.0 Try again later", times=1)
    run_until_idle(app)
    db.session.execute(Recipient.__table__.update().values(next_attempt_at=datetime.now(UTC)))
    db.session.commit()
    run_until_idle(app)
    row = _recipient("later@example.org")
    assert row.status == "sent" and row.attempts == 2
    assert len(smtp_server.messages_for("later@example.org")) == 1
    assert _account(account.id).consecutive_failures == 0


def test_retries_end_in_failed_after_the_last_delay(app, factory, smtp_server, settings):
    factory.create_account(**smtp_account(smtp_server), per_minute_limit=100)
    _running(factory, ["never@example.org"])
    smtp_server.fail_all(450, "4.2.0 Mailbox busy")
    for _ in range(len(settings.retry_delays_seconds) + 1):
        db.session.execute(Recipient.__table__.update().values(next_attempt_at=None))
        db.session.execute(Account.__table__.update().values(consecutive_failures=0))
        db.session.commit()
        run_until_idle(app)
    row = _recipient("never@example.org")
    assert row.status == "failed"
    assert row.attempts == len(settings.retry_delays_seconds) + 1


def test_three_consecutive_failures_pause_the_account_for_a_day(app, factory, smtp_server):
    account = factory.create_account(**smtp_account(smtp_server))
    _running(factory, [f"u{i}@example.org" for i in range(5)])
    # A failure of the session itself (MAIL FROM refused for now), not of one recipient.
    smtp_server.fail_mail(451, "4.3.0 Temporary local problem")
    before = time.time()
    run_until_idle(app)
    paused = _account(account.id)
    assert paused.status == "paused"
    assert "3 consecutive failures" in paused.paused_reason
    assert paused.paused_until.timestamp() >= before + 86400 - 5
    statuses = Counter(r.status for r in db.session.execute(select(Recipient)).scalars())
    # Three were tried and deferred; the other two never left and went back to pending.
    assert statuses == {"deferred": 3, "pending": 2}
    assert len(_events("account_paused")) == 1


def test_auth_failure_disables_the_account_and_hands_recipients_to_another(
    app, factory, smtp_servers, request_cleanup
):
    from tests.smtp_server import ScriptedSMTPServer

    good_server = smtp_servers[0]
    bad_server = ScriptedSMTPServer(auth=("user", "right")).start()
    request_cleanup.append(bad_server.stop)
    good = factory.create_account(**smtp_account(good_server), daily_limit=100)
    bad = factory.create_account(
        **smtp_account(bad_server), daily_limit=1000, username="user", password="wrong"
    )
    _running(factory, [f"u{i}@example.org" for i in range(6)])
    run_until_idle(app)
    assert _account(bad.id).status == "disabled"
    rows = db.session.execute(select(Recipient)).scalars().all()
    assert {r.status for r in rows} == {"sent"}
    assert {r.account_id for r in rows} == {good.id}
    # Attempts are never reset: the refused try counts as an attempt and as a hand-back.
    assert all(r.attempts == 1 + r.handbacks for r in rows)
    assert sum(r.handbacks for r in rows) == 1
    assert sum(len(good_server.messages_for(r.email)) for r in rows) == 6
    assert bad_server.received == []


def test_hard_bounce_is_suppressed_for_every_campaign(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["gone@example.org", "here@example.org"])
    smtp_server.fail_rcpt("gone@example.org", 550, "5.1.1 The email account does not exist")
    run_until_idle(app)
    assert _recipient("gone@example.org").status == "bounced"
    assert _recipient("here@example.org").status == "sent"
    suppression = db.session.execute(select(Suppression)).scalar_one()
    assert (suppression.value, suppression.reason) == ("gone@example.org", "bounced")
    later = factory.create_campaign(status="running")
    factory.create_recipients(later, ["gone@example.org"])
    run_until_idle(app)
    rows = (
        db.session.execute(select(Recipient.status).where(Recipient.campaign_id == later.id))
        .scalars()
        .all()
    )
    assert rows == ["suppressed"]
    assert len(smtp_server.messages_for("gone@example.org")) == 0


def test_daily_quota_reply_pauses_the_account_until_its_window_frees(app, factory, smtp_servers):
    quota_server, other_server, _ = smtp_servers
    gmail = factory.create_account(
        **smtp_account(quota_server), provider="gmail", daily_limit=1000, per_minute_limit=100
    )
    _running(factory, ["first@example.org"])
    run_until_idle(app)  # one message out: the account's day window has an oldest send
    [first] = quota_server.messages_for("first@example.org")
    quota_server.script(lambda rcpt, attempt: (550, "5.4.5 Daily user sending limit exceeded."))
    factory.create_account(**smtp_account(other_server), daily_limit=500, per_minute_limit=100)
    _running(factory, [f"u{i}@example.org" for i in range(4)])
    run_until_idle(app)
    paused = _account(gmail.id)
    assert paused.status == "paused"
    assert "daily_quota" in paused.paused_reason
    # Not a flat 24 h: exactly when the first send leaves the account's rolling day.
    assert abs(paused.paused_until.timestamp() - (first.received_at + 86400)) < 5
    rows = db.session.execute(select(Recipient)).scalars().all()
    assert {r.status for r in rows} == {"sent"}
    assert len(other_server.received) == 4


def test_policy_rejection_pauses_the_account_for_a_day(app, factory, smtp_servers):
    blocked, other, _ = smtp_servers
    account = factory.create_account(**smtp_account(blocked), daily_limit=1000)
    factory.create_account(**smtp_account(other), daily_limit=500)
    _running(factory, ["a@example.org", "b@example.org"])
    blocked.fail_all(554, "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org")
    before = time.time()
    run_until_idle(app)
    paused = _account(account.id)
    assert paused.status == "paused"
    assert before + 86400 - 5 <= paused.paused_until.timestamp() <= time.time() + 86400 + 5
    assert {r.status for r in db.session.execute(select(Recipient)).scalars()} == {"sent"}


def test_lost_outcome_after_data_is_unknown_and_never_resent(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["maybe@example.org"])
    smtp_server.drop_after_data(times=1)
    run_until_idle(app)
    row = _recipient("maybe@example.org")
    assert row.status == "unknown"
    assert [e.recipient_id for e in _events("unknown")] == [row.id]
    run_until_idle(app)
    assert _recipient("maybe@example.org").status == "unknown"


def test_connection_dropped_mid_data_defers(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["mid@example.org"])
    smtp_server.drop_connection_mid_data(times=1)
    run_until_idle(app)
    row = _recipient("mid@example.org")
    assert row.status == "deferred"
    assert smtp_server.messages_for("mid@example.org") == []


def test_suppression_added_after_dispatch_is_honoured_at_send_time(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    _running(factory, ["late@example.org"])
    result = dispatch(app)
    factory.suppress("late@example.org", reason="unsubscribed")
    send_batches(app, result)
    assert _recipient("late@example.org").status == "suppressed"
    assert smtp_server.received == []


def test_campaign_paused_after_dispatch_sends_nothing_and_waits(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    campaign = _running(factory, ["a@example.org", "b@example.org"])
    result = dispatch(app)
    db.session.execute(
        Campaign.__table__.update().where(Campaign.id == campaign.id).values(status="paused")
    )
    db.session.commit()
    account_day = Window(Scope.ACCOUNT, "1", 86400, 1000)
    limiter = Limiter(app.extensions["redis"])
    assert limiter.used([account_day]) == [2]
    send_batches(app, result)
    assert smtp_server.received == []
    rows = db.session.execute(select(Recipient)).scalars().all()
    assert {(r.status, r.account_id, r.attempts) for r in rows} == {("pending", None, 0)}
    assert limiter.used([account_day]) == [0]  # their reservations were given back


def test_template_error_at_send_time_fails_that_recipient_only(app, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server))
    campaign = factory.create_campaign(
        status="running", body_text="{% if vip %}{{ code }}{% endif %}Hello"
    )
    factory.create_recipients(campaign, ["vip@example.org"], fields={"vip": True})
    factory.create_recipients(campaign, ["plain@example.org"], fields={"vip": False})
    run_until_idle(app)
    assert _recipient("vip@example.org").status == "failed"
    assert _recipient("plain@example.org").status == "sent"


def test_sandbox_url_sends_every_account_to_the_sink(app, factory, smtp_servers, monkeypatch):
    sink, real, _ = smtp_servers
    factory.create_account(**smtp_account(real))
    _running(factory, ["x@example.org"])
    sandboxed = app.extensions["settings"].model_copy(
        update={"sandbox_smtp_url": f"smtp://127.0.0.1:{sink.port}"}
    )
    monkeypatch.setitem(app.extensions, "settings", sandboxed)
    run_until_idle(app)
    assert len(sink.messages_for("x@example.org")) == 1
    assert real.received == []
