"""GET /u/<token>: a confirmation page. POST /u/<token>: unsubscribe, including RFC 8058
one-click POSTs from mailbox providers (no login, no CSRF token: the signed token is the
credential)."""

from __future__ import annotations

from flask import abort, current_app, render_template, request

from app.db import unit_of_work
from app.extensions import csrf
from app.public import public
from app.services.unsubscribe import (
    InvalidToken,
    Subscriber,
    UnsubscribeTokens,
    find_subscriber,
    is_unsubscribed,
    unsubscribe,
)


def _tokens() -> UnsubscribeTokens:
    settings = current_app.extensions["settings"]
    return UnsubscribeTokens(settings.secret_key.get_secret_value(), settings.public_base_url)


def _subscriber(token: str) -> Subscriber:
    try:
        recipient_id = _tokens().recipient_id(token)
    except InvalidToken:
        abort(404)
    with unit_of_work() as session:
        subscriber = find_subscriber(session, recipient_id)
    if subscriber is None:
        abort(404)
    return subscriber


@public.get("/u/<token>")
def unsubscribe_page(token: str) -> str:
    subscriber = _subscriber(token)
    with unit_of_work() as session:
        done = is_unsubscribed(session, subscriber)
    return render_template("public/unsubscribe.html", email=subscriber.email, done=done)


@public.post("/u/<token>")
@csrf.exempt
def unsubscribe_post(token: str) -> str:
    subscriber = _subscriber(token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    with unit_of_work() as session:
        unsubscribe(session, subscriber, source="one-click" if one_click else "unsubscribe-page")
    return render_template("public/unsubscribe.html", email=subscriber.email, done=True)
