"""GET /campaigns/<id>/forecast: the schedule the campaign will send on."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

SCOPES = (
    "accounts",
    "sending_domain",
    "recipient_domain",
    "campaign",
    "client",
    "system",
    "none",
)


class BindingSchema(ma.Schema):
    scope = fields.String(
        required=True,
        validate=ma.validate.OneOf(SCOPES),
        metadata={"description": "the limit that decides the day's count; none: all waiting go"},
    )
    key = fields.String(required=True, allow_none=True)
    message = fields.String(required=True)


class AccountSendsSchema(ma.Schema):
    account_id = fields.Integer(required=True)
    sends = fields.Integer(required=True)


class DomainSendsSchema(ma.Schema):
    domain = fields.String(required=True)
    sends = fields.Integer(required=True)


class OtherDomainsSchema(ma.Schema):
    domains = fields.Integer(required=True)
    sends = fields.Integer(required=True)


class ForecastDaySchema(ma.Schema):
    date = fields.Date(required=True, metadata={"description": "in the window's time zone"})
    day = fields.Integer(required=True, metadata={"description": "0: today"})
    sends = fields.Integer(required=True)
    binding = fields.Nested(BindingSchema, required=True)
    by_account = fields.List(fields.Nested(AccountSendsSchema), required=True)
    by_domain = fields.List(
        fields.Nested(DomainSendsSchema),
        required=True,
        metadata={"description": "the 50 domains with the most sends that day"},
    )
    other_domains = fields.Nested(OtherDomainsSchema, required=True)


class ForecastDomainSchema(ma.Schema):
    domain = fields.String(required=True)
    waiting = fields.Integer(required=True)
    per_day = fields.Integer(required=True)
    freemail = fields.Boolean(required=True)
    finish_date = fields.Date(required=True, allow_none=True)
    sending_days = fields.Integer(required=True)
    message = fields.String(required=True)


class ForecastAccountSchema(ma.Schema):
    account_id = fields.Integer(required=True)
    name = fields.String(required=True)
    cap_today = fields.Integer(required=True)
    counted_today = fields.Integer(
        required=True, metadata={"description": "sends its day window still counts tonight"}
    )
    per_minute = fields.Integer(required=True, allow_none=True)
    available_from = fields.Date(required=True, allow_none=True)
    planned = fields.Integer(required=True, metadata={"description": "this campaign's sends"})


class ExcludedAccountSchema(ma.Schema):
    account_id = fields.Integer(required=True)
    name = fields.String(required=True)
    reason = fields.String(required=True)


class ForecastSchema(ma.Schema):
    campaign_id = fields.Integer(required=True)
    client_id = fields.Integer(required=True)
    status = fields.String(required=True)
    generated_at = fields.DateTime(required=True)
    timezone = fields.String(required=True)
    start_date = fields.Date(required=True)
    horizon_days = fields.Integer(required=True)
    to_send = fields.Integer(required=True, metadata={"description": "pending and deferred"})
    today = fields.Integer(required=True)
    finish_day = fields.Integer(required=True, allow_none=True)
    finish_date = fields.Date(
        required=True, allow_none=True, metadata={"description": "null: beyond the horizon"}
    )
    beyond_horizon = fields.Boolean(required=True)
    left_after_horizon = fields.Integer(required=True)
    summary = fields.String(required=True)
    days = fields.List(
        fields.Nested(ForecastDaySchema),
        required=True,
        metadata={"description": "days with sends (and today, even without)"},
    )
    domains = fields.List(
        fields.Nested(ForecastDomainSchema),
        required=True,
        metadata={"description": "the 200 domains with the most recipients waiting"},
    )
    domains_total = fields.Integer(required=True)
    accounts = fields.List(fields.Nested(ForecastAccountSchema), required=True)
    excluded_accounts = fields.List(fields.Nested(ExcludedAccountSchema), required=True)
    assumptions = fields.List(fields.String(), required=True)
