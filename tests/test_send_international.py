"""International addresses through the whole path: imported by the API, sent by the real send
path over a real SMTP connection. Domains go on the wire IDNA-encoded; a non-ASCII local part
goes with SMTPUTF8 where the server offers it and fails alone where it does not; nothing of a
failed recipient leaks into the next one's transaction."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy

from sqlalchemy import select

from app.extensions import db
from app.models import Account, Event, Recipient
from tests.pipeline import run_until_idle, smtp_account
from tests.smtp_server import ScriptedSMTPServer


def _campaign(api, emails: list[str]) -> int:
    response = api.post(
        "/api/v1/campaigns",
        json={
            "name": "intl",
            "subject": "Hi",
            "body_text": "Hello {{ email }}",
            "recipients": [{"email": e} for e in emails],
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["imported"] == len(emails), body
    campaign_id = body["id"]
    assert api.post(f"/api/v1/campaigns/{campaign_id}/start").status_code == 200
    return campaign_id


def _statuses(app) -> dict[str, str]:
    with app.app_context():
        db.session.expire_all()
        rows = db.session.execute(select(Recipient.email, Recipient.status)).all()
        return {email: status for email, status in rows}


def test_an_idn_domain_is_sent_idna_encoded_and_the_next_recipient_is_unharmed(
    app, api, factory, smtp_server
):
    factory.create_account(**smtp_account(smtp_server))
    _campaign(api, ["bob@münchen.de", "ann@example.org", "eve@faß.de"])
    run_until_idle(app)
    assert _statuses(app) == {
        "bob@münchen.de": "sent",
        "ann@example.org": "sent",
        "eve@faß.de": "sent",
    }
    wire = sorted(r.recipients[0] for r in smtp_server.received)
    assert wire == ["ann@example.org", "bob@xn--mnchen-3ya.de", "eve@xn--fa-hia.de"]
    [received] = smtp_server.messages_for("bob@xn--mnchen-3ya.de")
    message = message_from_bytes(received.data, policy=default_policy)
    assert message["To"].addresses[0].domain == "xn--mnchen-3ya.de"
    with app.app_context():
        assert db.session.execute(select(Event).where(Event.type == "unknown")).first() is None


def test_a_non_ascii_local_part_is_sent_with_smtputf8(app, api, factory):
    with ScriptedSMTPServer(smtputf8=True) as server:
        factory.create_account(**smtp_account(server))
        _campaign(api, ["jörg@example.org", "ann@example.org"])
        run_until_idle(app)
        assert _statuses(app) == {"jörg@example.org": "sent", "ann@example.org": "sent"}
        [received] = server.messages_for("jörg@example.org")
        assert (
            "SMTPUTF8"
            in server.mail_options[
                [r.recipients for r in server.received].index(["jörg@example.org"])
            ]
        )
        assert "jörg@example.org" in received.data.decode("utf-8")


def test_a_non_ascii_local_part_fails_alone_without_smtputf8(app, api, factory):
    with ScriptedSMTPServer(smtputf8=False) as server:
        account = factory.create_account(**smtp_account(server))
        _campaign(api, ["jörg@example.org", "ann@example.org", "bo@example.org"])
        run_until_idle(app)
        assert _statuses(app) == {
            "jörg@example.org": "failed",
            "ann@example.org": "sent",
            "bo@example.org": "sent",
        }
        assert server.attempts("jörg@example.org") == 0
        assert server.connections == 1
    with app.app_context():
        db.session.expire_all()
        row = db.session.execute(
            select(Recipient).where(Recipient.email == "jörg@example.org")
        ).scalar_one()
        assert "SMTPUTF8" in (row.last_smtp_text or "")
        refreshed = db.session.get(Account, account.id)
        # The account's session worked: it is not blamed for one recipient's address.
        assert refreshed.status == "active" and refreshed.consecutive_failures == 0
