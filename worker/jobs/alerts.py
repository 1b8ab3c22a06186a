"""Alerts for the on-call: one notify(key, text), deduplicated (same key at most once per
ALERT_DEDUP_SECONDS), delivered off the hot path by a task. A failing Redis or Telegram
never breaks the caller."""

from __future__ import annotations

import logging

from celery import current_app as current_celery
from flask import current_app
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

ALERT_QUEUE = "sendfleet.dispatch"


def notify(key: str, text: str) -> bool:
    """Returns True when the alert goes out, False when deduplicated or undeliverable."""
    settings = current_app.extensions["settings"]
    redis = current_app.extensions["redis"]
    log.warning("alert", extra={"alert_key": key, "alert_text": text})
    try:
        fresh = redis.set(f"sf:alert:{key}", "1", nx=True, ex=max(settings.alert_dedup_seconds, 1))
    except RedisError:
        log.exception("alert.dedup_failed", extra={"alert_key": key})
        return False
    if not fresh:
        return False
    if settings.telegram_bot_token is None or not settings.telegram_chat_id:
        return True
    try:
        current_celery.send_task("sendfleet.telegram", args=[text], queue=ALERT_QUEUE)
    except Exception:  # the broker being down must not break the pipeline
        log.exception("alert.enqueue_failed", extra={"alert_key": key})
        return False
    return True
