"""Clients: what an admin may create and change, the pause body, and a client's figures."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.api.schemas.campaigns import CountsSchema
from app.api.schemas.common import Text
from app.models import CampaignStatus, ClientStatus
from app.services.client_stats import ACCOUNT_TYPES, DAY_TYPES, DAYS_DEFAULT, DAYS_MAX

# What Telegram's sendMessage takes as chat_id: a numeric id (groups and channels are
# negative, -100...) or a public channel's @username (5-32 letters, digits, underscores).
TELEGRAM_CHAT_ID = r"^(-?[1-9][0-9]{0,19}|@[A-Za-z][A-Za-z0-9_]{4,31})$"


def _name(*, required: bool = False) -> Text:
    return Text(
        required=required,
        single_line=True,
        strip=True,
        validate=validate.Length(1, 200),
        metadata={"description": "unique among clients; leading and trailing blanks dropped"},
    )


def _telegram_chat_id() -> Text:
    return Text(
        allow_none=True,
        single_line=True,
        strip=True,
        validate=validate.Regexp(
            TELEGRAM_CHAT_ID, error="must be a Telegram chat id (-100123...) or @channelname"
        ),
        metadata={"description": "where this client's alerts go; null: TELEGRAM_CHAT_ID's chat"},
    )


class ClientCreateSchema(ma.Schema):
    name = _name(required=True)
    telegram_chat_id = _telegram_chat_id()


class ClientUpdateSchema(ma.Schema):
    """Only the fields given change; a null telegram_chat_id clears it."""

    name = _name()
    telegram_chat_id = _telegram_chat_id()


class ClientPauseSchema(ma.Schema):
    reason = Text(
        strip=True,
        validate=validate.Length(1, 500),
        metadata={"description": 'shown with the client; default "paused by an operator"'},
    )


class ClientSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in ClientStatus]))
    paused_reason = fields.String(required=True, allow_none=True)
    telegram_chat_id = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ClientListSchema(ma.Schema):
    items = fields.List(fields.Nested(ClientSchema), required=True)


class ClientStatsQuerySchema(ma.Schema):
    days = fields.Integer(  # a query string: "7" is the number 7 here
        load_default=DAYS_DEFAULT,
        validate=validate.Range(1, DAYS_MAX),
        metadata={"description": "how many UTC days, ending with today (included)"},
    )


CampaignCountsSchema = ma.Schema.from_dict(
    {status.value: fields.Integer(required=True) for status in CampaignStatus},
    name="CampaignCountsSchema",
)


def _outcomes() -> dict[str, fields.Field[Any]]:
    return {t.value: fields.Integer(required=True) for t in DAY_TYPES}


OutcomeCountsSchema = ma.Schema.from_dict(_outcomes(), name="OutcomeCountsSchema")
DayFiguresSchema = ma.Schema.from_dict(
    {"date": fields.Date(required=True), **_outcomes()}, name="DayFiguresSchema"
)
AccountFiguresSchema = ma.Schema.from_dict(
    {
        "id": fields.Integer(required=True),
        "name": fields.String(required=True),
        **{t.value: fields.Integer(required=True) for t in ACCOUNT_TYPES},
    },
    name="AccountFiguresSchema",
)


class RatesSchema(ma.Schema):
    bounce_rate = fields.Float(
        required=True, allow_none=True, metadata={"description": "bounced / (sent + bounced)"}
    )
    unsubscribe_rate = fields.Float(
        required=True, allow_none=True, metadata={"description": "unsubscribed / sent"}
    )
    complaint_rate = fields.Float(
        required=True, allow_none=True, metadata={"description": "complained / sent"}
    )


class ClientStatsSchema(ma.Schema):
    client_id = fields.Integer(required=True)
    days = fields.Integer(required=True)
    since = fields.DateTime(required=True, metadata={"description": "start of the first day"})
    until = fields.DateTime(required=True, metadata={"description": "end of today (exclusive)"})
    counts = fields.Nested(
        CountsSchema,
        required=True,
        metadata={"description": "recipients of the client's campaigns by status, all time"},
    )
    campaigns = fields.Nested(
        CampaignCountsSchema,
        required=True,
        metadata={"description": "the client's campaigns by status"},
    )
    per_day = fields.List(
        fields.Nested(DayFiguresSchema),
        required=True,
        metadata={"description": "every day of the range, oldest first, zero days included"},
    )
    per_account = fields.List(
        fields.Nested(AccountFiguresSchema),
        required=True,
        metadata={"description": "each of the client's accounts, over the range"},
    )
    totals = fields.Nested(
        OutcomeCountsSchema, required=True, metadata={"description": "per_day summed"}
    )
    rates = fields.Nested(
        RatesSchema,
        required=True,
        metadata={"description": "over the range; null when the denominator is 0"},
    )
