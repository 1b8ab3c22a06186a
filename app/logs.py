"""Structured (JSON) logging with fixed keys; never a secret, never a message body."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from app.settings import Settings

FIXED_KEYS = (
    "account_id",
    "campaign_id",
    "recipient_id",
    "recipient_domain",
    "smtp_code",
    "task_id",
)


class FixedKeysFilter(logging.Filter):
    """Gives every record the fixed keys, so log lines have one shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in FIXED_KEYS:
            if not hasattr(record, key):
                setattr(record, key, None)
        return True


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if getattr(root, "_sendfleet_configured", False):
        root.setLevel(settings.log_level)
        return
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(FixedKeysFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    root._sendfleet_configured = True  # type: ignore[attr-defined]
