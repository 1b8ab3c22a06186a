"""End-to-end (real Celery worker and beat): international addresses never take a connection,
an account or their neighbours down. Before the fix, bob@münchen.de raised an encoding error
at RCPT inside the worker, the pooled connection stayed inside its transaction, the recipient
became a false `unknown` with an alert, and the next recipient on that connection failed for
good with 503."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Account, Event, Recipient
from tests.e2e.conftest import settled, status_counts, wait_until
from tests.pipeline import smtp_account
from tests.smtp_server import ScriptedSMTPServer

RECIPIENTS = [
    "bob@münchen.de",
    "ann@example.org",
    "jörg@example.org",  # non-ASCII local part: needs SMTPUTF8
    "eve@faß.de",
    "zoe@example.org",
]


def test_international_addresses_go_out_or_fail_alone(stack, factory):
    with (
        ScriptedSMTPServer(smtputf8=True) as modern,
        ScriptedSMTPServer(smtputf8=False) as legacy,
    ):
        first = factory.create_account(**smtp_account(modern), tags=["modern"])
        second = factory.create_account(**smtp_account(legacy), tags=["legacy"])
        one = factory.create_campaign(status="running", account_tags=["modern"])
        factory.create_recipients(one, RECIPIENTS)
        two = factory.create_campaign(status="running", account_tags=["legacy"])
        factory.create_recipients(two, RECIPIENTS)
        wait_until(settled(one.id), 60, "the SMTPUTF8 campaign to settle")
        wait_until(settled(two.id), 60, "the legacy campaign to settle")

        assert status_counts(one.id) == {"sent": 5}
        wire = sorted(rcpt for r in modern.received for rcpt in r.recipients)
        assert wire == sorted(
            [
                "bob@xn--mnchen-3ya.de",
                "ann@example.org",
                "jörg@example.org",
                "eve@xn--fa-hia.de",
                "zoe@example.org",
            ]
        )
        # Without SMTPUTF8 only jörg fails; everyone after him on the connection is sent.
        assert status_counts(two.id) == {"sent": 4, "failed": 1}
        assert legacy.attempts("jörg@example.org") == 0
        assert len(legacy.received) == 4

    db.session.rollback()
    failed = db.session.execute(
        select(Recipient).where(Recipient.campaign_id == two.id, Recipient.status == "failed")
    ).scalar_one()
    assert failed.email == "jörg@example.org"
    assert "SMTPUTF8" in (failed.last_smtp_text or "")
    for account_id in (first.id, second.id):
        account = db.session.get(Account, account_id)
        assert account.status == "active", account.paused_reason
    assert db.session.execute(select(Event).where(Event.type == "unknown")).first() is None
