"""The add and edit form of a sender account: form fields to the API's schemas
(AccountCreateSchema / AccountUpdateSchema), so the web UI checks exactly what the API
checks, and the provider presets the page fills host, port and security from."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from werkzeug.datastructures import MultiDict

from app.api.schemas.accounts import SECURITY, AccountCreateSchema, AccountUpdateSchema
from rotator.providers import REGISTRY

INTEGER_FIELDS = ("port", "daily_limit", "per_minute_limit")
TEXT_FIELDS = ("name", "email", "from_name", "host", "username", "security")
# Cleared on edit when left empty (they are optional and nullable).
NULLABLE = ("from_name", "username", "per_minute_limit")


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def presets() -> dict[str, dict[str, Any]]:
    """Per provider what the form fills in when it is chosen."""
    return {
        name: {
            "host": p.host or "",
            "port": p.port,
            "security": p.security.value,
            "daily_cap": p.daily_cap,
            "username": p.username or "",
            "requires_password": p.requires_password,
        }
        for name, p in REGISTRY.items()
    }


def parse_account_form(form: MultiDict[str, str], *, creating: bool) -> dict[str, Any]:
    """The fields given, loaded by the API's schema; FormErrors maps field -> message.
    An empty password keeps the stored one (the field never shows it)."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in TEXT_FIELDS:
        value = form.get(name, "").strip()
        if value:
            data[name] = value
        elif not creating and name in NULLABLE:
            data[name] = None
    for name in INTEGER_FIELDS:
        raw = form.get(name, "").strip()
        if not raw:
            if not creating and name in NULLABLE:
                data[name] = None
            continue
        try:
            data[name] = int(raw)
        except ValueError:
            errors[name] = "Enter a whole number."
    password = form.get("password", "")
    if password:
        data["password"] = password
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    if tags or not creating:
        data["tags"] = tags
    data["warmup"] = form.get("warmup") == "on"
    if creating:
        data["provider"] = form.get("provider", "")
    schema = AccountCreateSchema() if creating else AccountUpdateSchema()
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ma.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"name": exc.messages}
        for name, message in messages.items():
            errors.setdefault(str(name), _first(message))
    if errors:
        raise FormErrors(errors)
    return loaded


def form_values(account: dict[str, Any] | None, form: MultiDict[str, str] | None) -> dict[str, Any]:
    """What the inputs show: what was just posted (after an error), else the account's
    values; never its password."""
    if form is not None:
        values: dict[str, Any] = {
            k: form.get(k, "") for k in (*TEXT_FIELDS, *INTEGER_FIELDS, "tags", "provider")
        }
        values["warmup"] = form.get("warmup") == "on"
        return values
    if account is None:
        preset = REGISTRY["gmail"]
        return {
            "provider": preset.name,
            "host": preset.host,
            "port": preset.port,
            "security": preset.security.value,
            "daily_limit": preset.daily_cap,
            "warmup": True,
        }
    shown: dict[str, Any] = {k: account.get(k) for k in (*TEXT_FIELDS, *INTEGER_FIELDS, "provider")}
    values = shown
    values["tags"] = ", ".join(account.get("tags") or [])
    values["warmup"] = account.get("warmup", True)
    return values


SECURITY_CHOICES = SECURITY


def _first(message: Any) -> str:
    while isinstance(message, (list, tuple)) and message:
        message = message[0]
    if isinstance(message, dict):
        return _first(next(iter(message.values()), ""))
    return str(message)
