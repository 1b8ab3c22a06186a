"""Turning a refusal into messages next to the fields of a form."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from app.errors import DomainError

GENERAL = "_form"  # a message about the form as a whole


def errors_of(exc: DomainError | ma.ValidationError) -> dict[str, str]:
    """field name -> message: a service's DomainError (its `field`), or a schema's
    ValidationError (the first message of each field, nested fields joined by dots)."""
    if isinstance(exc, DomainError):
        message = exc.message
        if exc.field and message.startswith(f"{exc.field}: "):
            message = message[len(exc.field) + 2 :]
        return {exc.field or GENERAL: message}
    found: dict[str, str] = {}
    _flatten(exc.messages, "", found)
    return found


def _flatten(messages: Any, prefix: str, found: dict[str, str]) -> None:
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = GENERAL if key == "_schema" else f"{prefix}{key}"
            _flatten(value, f"{name}." if isinstance(value, dict) else name, found)
    elif isinstance(messages, list) and messages:
        first = messages[0]
        if isinstance(first, (dict, list)):
            _flatten(first, prefix, found)
        else:
            found.setdefault(prefix.rstrip(".") or GENERAL, str(first))
    elif isinstance(messages, str):
        found.setdefault(prefix.rstrip(".") or GENERAL, messages)
