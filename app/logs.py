"""Structured (JSON) logging with fixed keys; never a secret, never a message body.

Every line passes app.redaction on its way out (keys named like secrets or message
contents are filtered, recipient addresses lose their local part, the deployment's own
secrets are replaced by value), so a careless `extra=` or exception text cannot leak them.
The dispatcher runs every few seconds; Celery's per-task lines about it (received,
succeeded, beat's "sending due task") are DEBUG here, so INFO shows work, not ticks."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from app.redaction import Redactor, secrets_of
from app.settings import Settings

FIXED_KEYS = (
    "account_id",
    "campaign_id",
    "recipient_id",
    "recipient_domain",
    "smtp_code",
    "smtp_stage",
    "task_id",
)

# Celery's own lines about every run of a frequent beat task.
_TICK_TASKS = ("sendfleet.dispatch",)
_TICK_LOGGERS = frozenset({"celery.beat", "celery.worker.strategy", "celery.app.trace"})


class FixedKeysFilter(logging.Filter):
    """Gives every record the fixed keys, so log lines have one shape."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in FIXED_KEYS:
            if not hasattr(record, key):
                setattr(record, key, None)
        return True


class TickLinesAtDebug(logging.Filter):
    """Celery's INFO lines about the dispatcher's ticks become DEBUG lines."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in _TICK_LOGGERS:
            return True
        if not any(task in record.getMessage() for task in _TICK_TASKS):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.level <= logging.DEBUG


class RedactingJsonFormatter(JsonFormatter):
    def __init__(self, redactor: Redactor, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redactor = redactor

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        redacted: dict[str, Any] = self.redactor.value(log_record)
        return redacted


class RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor, fmt: str) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if getattr(root, "_sendfleet_configured", False):
        root.setLevel(settings.log_level)
        return
    root.addHandler(build_handler(settings, sys.stderr))
    root.setLevel(settings.log_level)
    root._sendfleet_configured = True  # type: ignore[attr-defined]


def build_handler(settings: Settings, stream: TextIO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    redactor = Redactor(secrets_of(settings))
    if settings.log_format == "json":
        handler.setFormatter(
            RedactingJsonFormatter(
                redactor,
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            RedactingFormatter(redactor, "%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    handler.addFilter(FixedKeysFilter())
    handler.addFilter(TickLinesAtDebug(logging.getLevelName(settings.log_level)))
    return handler
