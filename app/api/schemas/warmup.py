"""The warm-up ramp day by day, and the result of a health check run now."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models import RampOutcome


class WarmupDaySchema(ma.Schema):
    day = fields.Date(required=True, metadata={"description": "the local day judged"})
    warmup_day = fields.Integer(required=True, metadata={"description": "ramp day during it"})
    cap = fields.Integer(required=True, metadata={"description": "the daily cap that day"})
    sent = fields.Integer(required=True)
    bounced = fields.Integer(required=True)
    bounce_percent = fields.Float(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in RampOutcome]))
    reason = fields.String(
        required=True, allow_none=True, metadata={"description": "why it held (null: advanced)"}
    )


class WarmupSchema(ma.Schema):
    account_id = fields.Integer(required=True)
    client_id = fields.Integer(required=True)
    name = fields.String(required=True)
    warmup = fields.Boolean(required=True, metadata={"description": "the ramp applies"})
    warmup_day = fields.Integer(required=True)
    warmup_start = fields.Integer(required=True)
    warmup_step = fields.Integer(required=True)
    daily_limit = fields.Integer(required=True)
    cap_today = fields.Integer(required=True)
    warmup_hold_reason = fields.String(required=True, allow_none=True)
    complete = fields.Boolean(
        required=True, metadata={"description": "the cap has reached daily_limit (or no ramp)"}
    )
    days = fields.List(fields.Nested(WarmupDaySchema), required=True)


class HealthCheckResultSchema(ma.Schema):
    account_id = fields.Integer(required=True)
    client_id = fields.Integer(required=True)
    ok = fields.Boolean(required=True)
    stage = fields.String(
        required=True, metadata={"description": "where it failed, or quit when it passed"}
    )
    error = fields.String(required=True, allow_none=True)
    transcript = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "the SMTP dialogue, credentials masked as ****"},
    )
    duration_ms = fields.Integer(required=True)
    checked_at = fields.DateTime(required=True)
    resumed = fields.Boolean(
        required=True, metadata={"description": "a pause that had run out ended (check passed)"}
    )
    status = fields.String(required=True, metadata={"description": "the account's status now"})
