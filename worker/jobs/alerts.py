"""Alerts for the on-call: one notify(key, text), deduplicated (same key at most once per
ALERT_DEDUP_SECONDS), delivered off the hot path by a task. A failing Redis or Telegram
never breaks the caller.

An alert about a client's campaign or account names the client and goes to the client's
own Telegram chat (clients.telegram_chat_id) when it has one, else to TELEGRAM_CHAT_ID."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from celery import current_app as current_celery
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import text as sql
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db

log = logging.getLogger(__name__)

ALERT_QUEUE = "sendfleet.dispatch"
CLIENT = sql("SELECT name, telegram_chat_id FROM clients WHERE id = :id")


@dataclass(frozen=True)
class _Audience:
    client_name: str | None
    chat_id: str | None


def notify(
    key: str, text: str, *, client_id: int | None = None, dedup_seconds: int | None = None
) -> bool:
    """Returns True when the alert goes out, False when deduplicated or undeliverable.
    `dedup_seconds` overrides ALERT_DEDUP_SECONDS for keys that must stay quiet longer
    (once a day: a key naming the date, kept for a day or more)."""
    settings = current_app.extensions["settings"]
    redis = current_app.extensions["redis"]
    audience = _audience(client_id)
    if audience.client_name is not None:
        text = f"[{audience.client_name}] {text}"
    log.warning("alert", extra={"alert_key": key, "alert_text": text, "client_id": client_id})
    try:
        quiet = settings.alert_dedup_seconds if dedup_seconds is None else dedup_seconds
        fresh = redis.set(f"sf:alert:{key}", "1", nx=True, ex=max(quiet, 1))
    except RedisError:
        log.exception("alert.dedup_failed", extra={"alert_key": key})
        return False
    if not fresh:
        return False
    chat_id = audience.chat_id or settings.telegram_chat_id
    if settings.telegram_bot_token is None or not chat_id:
        return True
    try:
        current_celery.send_task("sendfleet.telegram", args=[text, chat_id], queue=ALERT_QUEUE)
    except Exception:  # the broker being down must not break the pipeline
        log.exception("alert.enqueue_failed", extra={"alert_key": key})
        return False
    return True


def _audience(client_id: int | None) -> _Audience:
    """The client's name and own chat, read on a connection of its own: the caller's
    transaction is left alone, and a database that fails here costs the name only."""
    if client_id is None:
        return _Audience(None, None)
    try:
        with db.engine.connect() as conn:
            row = conn.execute(CLIENT, {"id": client_id}).first()
    except SQLAlchemyError:
        log.warning("alert.client_unknown", extra={"client_id": client_id}, exc_info=True)
        return _Audience(f"client {client_id}", None)
    if row is None:
        return _Audience(f"client {client_id}", None)
    return _Audience(row.name, row.telegram_chat_id or None)
