"""Schemas of GET /blacklist and GET /domains."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from app.models import BlacklistStatus

DOMAIN_MAX = 255
STATUSES = [s.value for s in BlacklistStatus]
KINDS = ["ip", "domain"]


class BlacklistQuerySchema(ma.Schema):
    status = fields.String(
        validate=validate.OneOf(STATUSES), metadata={"description": "only targets in this state"}
    )
    kind = fields.String(validate=validate.OneOf(KINDS), metadata={"description": "ip or domain"})


class ListResultSchema(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    answers = fields.List(fields.String(), required=True)
    note = fields.String(allow_none=True)


class BlacklistEntrySchema(ma.Schema):
    target = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    status = fields.String(
        required=True,
        validate=validate.OneOf(STATUSES),
        metadata={"description": "unknown: some list did not answer; never taken for clean"},
    )
    lists_hit = fields.List(fields.String(), required=True)
    lists = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ListResultSchema),
        required=True,
        metadata={"description": "each configured list's verdict and answers"},
    )
    note = fields.String(allow_none=True, required=True)
    checked_at = fields.DateTime(required=True)
    accounts = fields.List(
        fields.Integer(), required=True, metadata={"description": "the accounts on this target"}
    )


class BlacklistListSchema(ma.Schema):
    items = fields.List(fields.Nested(BlacklistEntrySchema), required=True)


class DomainQuerySchema(ma.Schema):
    domain = fields.String(
        validate=[
            validate.Length(1, DOMAIN_MAX),
            validate.Regexp(r"^[A-Za-z0-9_.-]+$", error="must be a domain name like example.com"),
        ],
        metadata={"description": "only this sending domain"},
    )


class FindingSchema(ma.Schema):
    status = fields.String(required=True, validate=validate.OneOf(["pass", "fail", "unknown"]))
    found = fields.String(allow_none=True, metadata={"description": "what is published"})
    problem = fields.String(allow_none=True)
    fix = fields.String(
        allow_none=True, metadata={"description": "in plain words: the record to publish"}
    )
    details = fields.Dict()


class DomainSchema(ma.Schema):
    domain = fields.String(required=True)
    checked_at = fields.DateTime(required=True, allow_none=True)
    accounts = fields.List(fields.Integer(), required=True)
    providers = fields.List(fields.String(), required=True)
    spf = fields.Nested(FindingSchema, allow_none=True, required=True)
    dkim = fields.Nested(FindingSchema, allow_none=True, required=True)
    dmarc = fields.Nested(FindingSchema, allow_none=True, required=True)
    mx = fields.Nested(FindingSchema, allow_none=True, required=True)
    ptr = fields.Nested(
        FindingSchema,
        allow_none=True,
        required=True,
        metadata={"description": "null when the domain sends from no own IP"},
    )


class DomainListSchema(ma.Schema):
    items = fields.List(fields.Nested(DomainSchema), required=True)
