"""Unsubscribe: signed tokens, the confirmation page, RFC 8058 one-click POST."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Event, Recipient, Suppression
from app.services.unsubscribe import InvalidToken, UnsubscribeTokens


def _tokens(settings) -> UnsubscribeTokens:
    return UnsubscribeTokens(settings.secret_key.get_secret_value(), settings.public_base_url)


def _setup(factory):
    campaign = factory.create_campaign(status="running")
    [row] = factory.create_recipients(campaign, ["Reader@Example.org"])
    return campaign, row


def test_get_shows_a_confirmation_page_and_changes_nothing(client, factory, settings):
    _, row = _setup(factory)
    response = client.get(f"/u/{_tokens(settings).token(row.id)}")
    assert response.status_code == 200
    assert b"reader@example.org" in response.data
    assert b'<form method="post">' in response.data
    assert db.session.execute(select(Suppression)).first() is None


def test_one_click_post_suppresses_without_login_or_csrf(client, factory, settings):
    campaign, row = _setup(factory)
    response = client.post(
        f"/u/{_tokens(settings).token(row.id)}",
        data={"List-Unsubscribe": "One-Click"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    suppression = db.session.execute(select(Suppression)).scalar_one()
    assert (suppression.value, suppression.reason, suppression.source) == (
        "reader@example.org",
        "unsubscribed",
        "one-click",
    )
    event = db.session.execute(select(Event).where(Event.type == "unsubscribed")).scalar_one()
    assert (event.campaign_id, event.recipient_id) == (campaign.id, row.id)


def test_unsubscribing_stops_the_address_in_every_campaign(client, factory, settings):
    _, row = _setup(factory)
    other = factory.create_campaign(status="running")
    factory.create_recipients(other, ["reader@example.org"])
    client.post(f"/u/{_tokens(settings).token(row.id)}")
    db.session.expire_all()
    rows = db.session.execute(select(Recipient)).scalars().all()
    assert [r.status for r in rows] == ["unsubscribed", "unsubscribed"]
    events = db.session.execute(select(Event).where(Event.type == "unsubscribed")).scalars()
    assert sorted(e.recipient_id for e in events) == sorted(r.id for r in rows)


def test_unsubscribing_twice_is_harmless(client, factory, settings):
    _, row = _setup(factory)
    url = f"/u/{_tokens(settings).token(row.id)}"
    assert client.post(url).status_code == 200
    assert client.post(url).status_code == 200
    assert len(db.session.execute(select(Suppression)).all()) == 1
    assert len(db.session.execute(select(Event).where(Event.type == "unsubscribed")).all()) == 1
    assert b"You are unsubscribed" in client.get(url).data


def test_forged_or_altered_tokens_are_404_and_change_nothing(client, factory, settings):
    _, row = _setup(factory)
    good = _tokens(settings).token(row.id)
    forged = UnsubscribeTokens("another-secret", settings.public_base_url).token(row.id)
    altered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    for token in (forged, altered, "garbage", _tokens(settings).token(row.id + 999)):
        assert client.post(f"/u/{token}").status_code == 404
        assert client.get(f"/u/{token}").status_code == 404
    assert db.session.execute(select(Suppression)).first() is None


def test_tokens_are_the_itsdangerous_tokens_already_in_sent_mail():
    """The send path keeps one signer (and its derived key) instead of a new one per
    message; the tokens it makes, and those it accepts, are unchanged."""
    from itsdangerous import URLSafeSerializer

    from app.services.unsubscribe import SALT

    plain = URLSafeSerializer("s" * 40, salt=SALT)
    tokens = UnsubscribeTokens.of("s" * 40, "https://sendfleet.test/")
    assert UnsubscribeTokens.of("s" * 40, "https://sendfleet.test/") is tokens
    for recipient_id in (1, 4242, 10**12):
        assert tokens.token(recipient_id) == plain.dumps(recipient_id)
        assert tokens.recipient_id(plain.dumps(recipient_id)) == recipient_id
    assert tokens.url(7) == f"https://sendfleet.test/u/{plain.dumps(7)}"
    other = URLSafeSerializer("t" * 40, salt=SALT)
    with pytest.raises(InvalidToken):
        tokens.recipient_id(other.dumps(7))
