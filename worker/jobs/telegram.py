"""Telegram Bot API delivery (sendMessage). TELEGRAM_API_BASE points tests at a local server.

Only the `sendfleet.telegram` task calls this, never the send path. Each call is bounded by
TELEGRAM_TIMEOUT_SECONDS. A Bot API that is down or hangs (timeout, refused connection,
5xx, 429) is remembered in Redis for the backoff: while it lasts, other deliveries do not
call it at all and are retried later, so an outage holds at most one alert task per
backoff interval, cluster-wide, for one timeout. A refusal that no retry can change (400
"chat not found", 401 bad token) is dropped."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from flask import current_app
from redis import Redis
from redis.exceptions import RedisError

from app.settings import Settings

log = logging.getLogger(__name__)

MAX_TEXT = 4000  # Telegram's limit is 4096 characters
DOWN_KEY = "sf:telegram:down"
MAX_RETRY_SECONDS = 3600
# A hard ceiling on one task run, above the longest TELEGRAM_TIMEOUT_SECONDS (60 s): urllib's
# timeout is per socket operation, and a server trickling bytes could outlast it.
TASK_TIME_LIMIT_SECONDS = 90


@dataclass(frozen=True)
class Delivery:
    sent: bool
    retry_in: float | None = None  # seconds; None: done (sent, dropped or not configured)


def send_telegram(
    settings: Settings, text: str, chat_id: str | None = None, redis: Redis | None = None
) -> bool:
    """Sends `text` to `chat_id` (a client's own chat), else to TELEGRAM_CHAT_ID."""
    return deliver(settings, text, chat_id, redis).sent


def deliver(
    settings: Settings, text: str, chat_id: str | None = None, redis: Redis | None = None
) -> Delivery:
    chat_id = chat_id or settings.telegram_chat_id
    if settings.telegram_bot_token is None or not chat_id:
        return Delivery(sent=False)
    down_for = _down_for(redis)
    if down_for:
        return Delivery(sent=False, retry_in=down_for)
    token = settings.telegram_bot_token.get_secret_value()
    url = f"{settings.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
    body = json.dumps(
        {"chat_id": chat_id, "text": text[:MAX_TEXT], "disable_web_page_preview": True}
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.telegram_timeout_seconds) as answer:
            ok = bool(json.load(answer).get("ok"))
    except urllib.error.HTTPError as exc:
        return _refused(settings, redis, exc)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # Never log the URL: it carries the bot token.
        log.warning("telegram.unavailable", extra={"error": type(exc).__name__})
        return _mark_down(settings, redis, settings.telegram_retry_backoff_seconds)
    if not ok:
        log.warning("telegram.refused")
    return Delivery(sent=ok)


def deliver_alert(text: str, chat_id: str | None, retries_so_far: int) -> float | None:
    """The `sendfleet.telegram` task's work: seconds until the next try, or None when done
    (sent, refused for good, or TELEGRAM_RETRIES used up)."""
    settings: Settings = current_app.extensions["settings"]
    delivery = deliver(settings, text, chat_id, current_app.extensions["redis"])
    if delivery.retry_in is None:
        return None
    if retries_so_far >= settings.telegram_retries:
        log.error("telegram.gave_up", extra={"retries": retries_so_far})
        return None
    return retry_delay(settings, retries_so_far, delivery.retry_in)


def retry_delay(settings: Settings, retries_so_far: int, retry_in: float) -> float:
    """Doubling backoff from TELEGRAM_RETRY_BACKOFF_SECONDS, never before the Bot API said
    (429 retry_after) or the outage mark expires; at most an hour."""
    doubling = settings.telegram_retry_backoff_seconds * 2**retries_so_far
    return min(max(doubling, retry_in), MAX_RETRY_SECONDS)


def _refused(settings: Settings, redis: Redis | None, exc: urllib.error.HTTPError) -> Delivery:
    if exc.code == 429 or exc.code >= 500:
        wait = float(settings.telegram_retry_backoff_seconds)
        if exc.code == 429:
            wait = max(wait, _retry_after(exc))
        log.warning("telegram.unavailable", extra={"status": exc.code})
        return _mark_down(settings, redis, wait)
    log.warning("telegram.refused", extra={"status": exc.code})
    return Delivery(sent=False)


def _retry_after(exc: urllib.error.HTTPError) -> float:
    try:
        parameters = json.load(exc).get("parameters") or {}
        return float(parameters.get("retry_after", 0))
    except (ValueError, OSError, AttributeError, TypeError):
        return 0.0


def _mark_down(settings: Settings, redis: Redis | None, seconds: float) -> Delivery:
    if redis is not None:
        try:
            redis.set(DOWN_KEY, "1", px=max(int(seconds * 1000), 1))
        except RedisError:
            log.warning("telegram.down_mark_failed")
    return Delivery(sent=False, retry_in=seconds)


def _down_for(redis: Redis | None) -> float:
    if redis is None:
        return 0.0
    try:
        left = redis.pttl(DOWN_KEY)
    except RedisError:
        return 0.0
    return left / 1000 if left and left > 0 else 0.0
