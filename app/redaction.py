"""What never leaves the process in a log line or an error report: recipient addresses
(their local part; the domain stays, it is what operators need), message bodies and
subjects, and secrets (passwords, tokens, keys, DSNs, Authorization headers).

Used by the JSON log formatter (app.logs) and Sentry's before_send (app.observability).
Keys are matched by name anywhere in a nested structure; free text is scrubbed by pattern
and for the process's own secrets by value."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from app.settings import Settings

FILTERED = "[Filtered]"

# Any key containing one of these is a secret, whatever its value looks like.
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|cookie|credential|api[-_]?key|apikey|"
    r"dsn|private[-_]?key|signature|fernet",
    re.IGNORECASE,
)
# The content of a message: never reported, however short.
_BODY_KEYS = frozenset(
    {"subject", "body", "body_text", "body_html", "html", "text_body", "message_body", "mime"}
)

_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)
_PATTERNS = (
    # user:password@ and key@ in URLs (DSNs, database and broker URLs)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*(:[^/\s@]*)?@"), r"\1" + FILTERED + "@"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + FILTERED),
    # SendGrid API keys, Telegram bot tokens
    (re.compile(r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"), FILTERED),
    (re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"), FILTERED),
    # password=..., "secret": "..." inside free text (a repr, a query string)
    (
        re.compile(
            r"(?i)((?:password|passwd|secret|token|api[-_]?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,}]+"
        ),
        r"\1" + FILTERED,
    ),
)


class Redactor:
    def __init__(self, known_secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._known = sorted({s for s in known_secrets if s and len(s) >= 6}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._known:
            value = value.replace(secret, FILTERED)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return _ADDRESS.sub(lambda m: f"{FILTERED}@{m.group(1)}", value)

    def value(self, value: Any, key: str | None = None) -> Any:
        if key is not None and is_sensitive_key(key):
            return FILTERED if value not in (None, "", [], {}) else value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: self.value(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


def is_sensitive_key(key: str) -> bool:
    return key.lower() in _BODY_KEYS or bool(_SECRET_KEY.search(key))


def secrets_of(settings: Settings) -> list[str]:
    """The values of this deployment's own secrets, to be replaced wherever they appear."""
    values: list[str] = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, str) and "://" in value and field.annotation is not bool:
            password = urlsplit(value).password
            if password:
                values.append(password)
    return values
