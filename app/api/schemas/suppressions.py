"""Suppressions: an address or a whole domain no campaign may send to."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from app.api.schemas.common import EMAIL_MAX, PageQuerySchema, PageSchema, Text
from app.models import SuppressionKind, SuppressionReason

# The longest domain an address can have: "a@" plus it within EMAIL_MAX.
DOMAIN_MAX = EMAIL_MAX - 2


class SuppressionCreateSchema(ma.Schema):
    # Normalised (and checked) by the service the way the importer stores recipients.
    email = Text(
        single_line=True,
        strip=True,
        validate=validate.Length(1, EMAIL_MAX),
        metadata={"description": "suppress one address (give email or domain)", "format": "email"},
    )
    domain = Text(
        single_line=True,
        strip=True,
        validate=validate.Length(1, DOMAIN_MAX),
        metadata={"description": "suppress every address at a domain"},
    )
    reason = fields.String(
        load_default=SuppressionReason.MANUAL.value,
        validate=validate.OneOf([r.value for r in SuppressionReason]),
    )

    @ma.validates_schema
    def _exactly_one(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [key for key in ("email", "domain") if key in data]
        if len(given) != 1:
            field = "domain" if len(given) == 2 else "email"
            raise ma.ValidationError("give exactly one of email or domain", field)


class SuppressionSchema(ma.Schema):
    id = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in SuppressionKind]))
    value = fields.String(
        required=True, metadata={"description": "the lower-cased address or domain"}
    )
    reason = fields.String(required=True)
    source = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    client_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "the client whose campaigns it stops; null: every client's"},
    )
    scope = fields.Function(
        lambda row: "global" if row.client_id is None else "client",
        required=True,
        metadata={
            "description": "`global` (a bounce, a complaint, an operator's block: honoured "
            "by every client) or `client` (an unsubscribe from this client, or its own block)",
            "enum": ["global", "client"],
        },
    )


class SuppressionQuerySchema(PageQuerySchema):
    q = Text(
        validate=validate.Length(max=320),
        metadata={"description": "substring of the address or domain"},
    )


class SuppressionPageSchema(PageSchema):
    items = fields.List(fields.Nested(SuppressionSchema), required=True)


class SuppressionDeleteQuerySchema(ma.Schema):
    confirm = fields.Boolean(
        load_default=False,
        metadata={
            "description": "required (true) to lift an `unsubscribed` or `complained` "
            "suppression: it is a person's opt-out. Without it such a delete answers 409 "
            "naming this field. Bounced and manual suppressions need no confirmation."
        },
    )
