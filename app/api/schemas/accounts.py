"""Sender accounts: what may be created and changed, and the pool state shown for each."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.api.schemas.common import (
    INT4_MAX,
    BoundedDateTime,
    EmailAddress,
    StrictBoolean,
    StrictInteger,
    Text,
    dedupe,
)
from app.models import AccountStatus
from rotator.providers import REGISTRY

SECURITY = ("starttls", "tls", "none")
# A longer pause is an account to disable or delete, not to pause.
PAUSE_MAX_AHEAD = timedelta(days=366)


class AccountFieldsSchema(ma.Schema):
    """Fields an account may be created with and changed afterwards (all but provider)."""

    name = Text(single_line=True, strip=True, validate=validate.Length(1, 200))
    email = EmailAddress(
        metadata={"description": "the From address; its domain is the sending domain"}
    )
    from_name = Text(
        allow_none=True, single_line=True, strip=True, validate=validate.Length(max=200)
    )
    host = Text(
        single_line=True,
        strip=True,
        validate=validate.Length(1, 255),
        metadata={"description": "default: the provider preset's; required for postfix and smtp"},
    )
    port = StrictInteger(validate=validate.Range(1, 65535))
    security = fields.String(validate=validate.OneOf(SECURITY))
    username = Text(allow_none=True, single_line=True, validate=validate.Length(1, 320))
    password = Text(
        allow_none=True,
        load_only=True,
        single_line=True,
        validate=validate.Length(1, 4096),
        metadata={"description": "stored encrypted, never returned; null removes it"},
    )
    daily_limit = StrictInteger(
        validate=validate.Range(1, INT4_MAX),
        metadata={"description": "default: the provider's daily cap"},
    )
    per_minute_limit = StrictInteger(allow_none=True, validate=validate.Range(1, INT4_MAX))
    warmup = StrictBoolean(
        metadata={"description": "start at the warm-up ramp (default) or at the full daily limit"}
    )
    warmup_start = StrictInteger(
        allow_none=True,
        validate=validate.Range(1, INT4_MAX),
        metadata={"description": "the ramp's first-day cap; null: WARMUP_START"},
    )
    warmup_step = StrictInteger(
        allow_none=True,
        validate=validate.Range(0, INT4_MAX),
        metadata={"description": "what each healthy day adds to the cap; null: WARMUP_STEP"},
    )
    sending_ip = Text(
        allow_none=True,
        strip=True,
        metadata={
            "description": "the public IP this account's mail leaves from (an own relay); "
            "blacklist-checked, and its SPF and PTR verified"
        },
    )
    dkim_selector = Text(
        allow_none=True,
        strip=True,
        validate=[
            validate.Length(1, 63),
            validate.Regexp(
                r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", error="must be a DKIM selector"
            ),
        ],
        metadata={"description": "the selector the provider signs with, besides DKIM_SELECTORS"},
    )
    tags = fields.List(
        Text(single_line=True, strip=True, validate=validate.Length(1, 100)),
        validate=validate.Length(max=100),
    )

    @ma.validates("sending_ip")
    def _ip_address(self, value: str | None, **kwargs: Any) -> None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ma.ValidationError("must be an IPv4 or IPv6 address") from None

    @ma.post_load
    def _canonical_ip(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("sending_ip"):  # one spelling per address: targets compare as text
            data["sending_ip"] = str(ipaddress.ip_address(data["sending_ip"]))
        return data

    @ma.post_load
    def _unique_tags(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if "tags" in data:
            data["tags"] = dedupe(data["tags"])
        return data


class AccountCreateSchema(AccountFieldsSchema):
    name = Text(required=True, single_line=True, strip=True, validate=validate.Length(1, 200))
    provider = fields.String(
        required=True,
        validate=validate.OneOf(list(REGISTRY)),
        metadata={"description": "the preset: " + ", ".join(REGISTRY)},
    )
    email = EmailAddress(required=True)
    warmup = StrictBoolean(load_default=True)


class AccountUpdateSchema(AccountFieldsSchema):
    """Any field of AccountCreateSchema but provider; a new password is re-encrypted."""

    @ma.pre_load
    def _provider_is_fixed(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and "provider" in data:
            raise ma.ValidationError(
                "the provider of an account cannot be changed; create a new account", "provider"
            )
        return data


class PauseSchema(ma.Schema):
    reason = Text(
        validate=validate.Length(1, 500), metadata={"description": 'default "paused by operator"'}
    )
    until = BoundedDateTime(
        allow_none=True,
        future=True,
        max_ahead=PAUSE_MAX_AHEAD,
        metadata={"description": "resume by itself after this time (the health check resumes it)"},
    )


class AuthWarningSchema(ma.Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    fix = fields.String(required=True)


class AccountSchema(ma.Schema):
    id = fields.Integer(required=True)
    client_id = fields.Integer(required=True)
    name = fields.String(required=True)
    provider = fields.String(required=True)
    email = fields.String(required=True)
    sending_domain = fields.String(required=True)
    from_name = fields.String(required=True, allow_none=True)
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    security = fields.String(required=True, validate=validate.OneOf(SECURITY))
    username = fields.String(required=True, allow_none=True)
    has_password = fields.Boolean(required=True)
    daily_limit = fields.Integer(required=True)
    per_minute_limit = fields.Integer(required=True, allow_none=True)
    warmup = fields.Boolean(required=True)
    warmup_day = fields.Integer(required=True)
    warmup_start = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: WARMUP_START"}
    )
    warmup_step = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null: WARMUP_STEP"}
    )
    warmup_held_at = fields.DateTime(required=True, allow_none=True)
    warmup_hold_reason = fields.String(required=True, allow_none=True)
    sending_ip = fields.String(required=True, allow_none=True)
    dkim_selector = fields.String(required=True, allow_none=True)
    tags = fields.List(fields.String(), required=True)
    warnings = fields.List(
        fields.Nested(AuthWarningSchema),
        metadata={
            "description": "POST only: the sending domain's SPF or DKIM failing at its latest "
            "check (GET /api/v1/domains), an SPF that does not name the provider, or no "
            "check yet; each with the fix"
        },
    )
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in AccountStatus]))
    paused_reason = fields.String(required=True, allow_none=True)
    paused_by = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "who paused it: operator, guard, refusal, failures, sender_auth, "
            "blacklist, health ...; null when active or paused before it was recorded"
        },
    )
    pause_details = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "the figures that decided an automatic pause (rates, codes)"},
    )
    paused_until = fields.DateTime(required=True, allow_none=True)
    consecutive_failures = fields.Integer(required=True)
    cap_today = fields.Integer(
        required=True,
        metadata={"description": "the daily cap in force today (warm-up ramp or daily_limit)"},
    )
    sent_today = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "sends in the last 24 h (the rate limiter's count); "
            "null when Redis is unreachable"
        },
    )
    last_health_check_at = fields.DateTime(required=True, allow_none=True)
    last_health_ok = fields.Boolean(required=True, allow_none=True)
    last_health_error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class AccountListSchema(ma.Schema):
    items = fields.List(fields.Nested(AccountSchema), required=True)
