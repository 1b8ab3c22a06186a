"""Telegram Bot API delivery (sendMessage). TELEGRAM_API_BASE points tests at a local server."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from app.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
MAX_TEXT = 4000  # Telegram's limit is 4096 characters


def send_telegram(settings: Settings, text: str, chat_id: str | None = None) -> bool:
    """Sends `text` to `chat_id` (a client's own chat), else to TELEGRAM_CHAT_ID."""
    chat_id = chat_id or settings.telegram_chat_id
    if settings.telegram_bot_token is None or not chat_id:
        return False
    token = settings.telegram_bot_token.get_secret_value()
    url = f"{settings.telegram_api_base.rstrip('/')}/bot{token}/sendMessage"
    body = json.dumps(
        {
            "chat_id": chat_id,
            "text": text[:MAX_TEXT],
            "disable_web_page_preview": True,
        }
    ).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            ok = bool(json.load(response).get("ok"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # Never log the URL: it carries the bot token.
        log.warning("telegram.failed", extra={"error": type(exc).__name__})
        return False
    if not ok:
        log.warning("telegram.refused")
    return ok
