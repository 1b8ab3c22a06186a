"""Campaigns, their recipients and import reports."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import marshmallow as ma
from flask_smorest.fields import Upload
from marshmallow import fields, validate

from app.api.schemas.common import (
    INT4_MAX,
    PageQuerySchema,
    PageSchema,
    StrictInteger,
    Text,
    check_storable,
    dedupe,
    storable_json_scalar,
)
from app.models import CampaignStatus, RecipientStatus

SUBJECT_MAX = 998  # RFC 5322 line length
BODY_MAX = 1_000_000
FIELD_NAME_MAX = 100
PRIORITY_MAX = 100  # campaigns.priority's check constraint


def _check_timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ma.ValidationError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        ) from None


class WindowSchema(ma.Schema):
    timezone = Text(required=True, validate=[validate.Length(1, 64), _check_timezone])
    days = fields.List(
        StrictInteger(validate=validate.Range(0, 6)),
        required=True,
        validate=validate.Length(1, 7),
        metadata={"description": "weekdays to send on, Monday=0 ... Sunday=6"},
    )
    start_hour = StrictInteger(required=True, validate=validate.Range(0, 23))
    end_hour = StrictInteger(
        required=True,
        validate=validate.Range(1, 24),
        metadata={"description": "exclusive; greater than start_hour"},
    )

    @ma.validates_schema
    def _start_before_end(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["start_hour"] >= data["end_hour"]:
            raise ma.ValidationError("must be greater than start_hour", "end_hour")

    @ma.post_load
    def _sorted_days(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["days"] = sorted(set(data["days"]))
        return data


RECIPIENT_ITEM_DOC = {
    "type": "object",
    "required": ["email"],
    # Longer addresses are rejected rows of the import report (app.services.addresses).
    "properties": {"email": {"type": "string", "maxLength": 254}},
    "additionalProperties": {
        "description": "a custom field for the templates",
        "anyOf": [{"type": "string", "nullable": True}, {"type": "number"}, {"type": "boolean"}],
    },
}


class RecipientRows(fields.Field[list[dict[str, Any]]]):
    """`[{email, ...fields}]`. Checked by hand rather than with a nested schema: lists may
    hold a million rows. Structure errors are 422 naming `recipients.<i>.<key>`; whether
    an address is valid, a duplicate or suppressed is the importer's per-row report."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "array", "items": RECIPIENT_ITEM_DOC}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, list):
            raise ma.ValidationError("must be a list of objects with an email")
        for index, row in enumerate(value):
            problem = _row_problem(row)
            if problem:
                key, message = problem
                raise ma.ValidationError({index: {key: [message]} if key else [message]})
        return value


def _row_problem(row: Any) -> tuple[str | None, str] | None:
    if not isinstance(row, dict):
        return None, "must be an object with an email"
    if "email" not in row:
        return "email", "Missing data for required field."
    if not isinstance(row["email"], str):
        return "email", "Not a valid string."
    for key, value in row.items():
        if not key or len(key) > FIELD_NAME_MAX:
            return None, f"field names must be 1 to {FIELD_NAME_MAX} characters: {key[:20]!r}"
        try:
            check_storable(key)
        except ma.ValidationError:
            return None, f"field name {key!r} holds characters that cannot be stored"
        reason = storable_json_scalar(value)
        if reason:
            return key, reason
    return None


class CampaignFieldsSchema(ma.Schema):
    """The fields of a new campaign, in JSON and as multipart form fields alike."""

    name = Text(required=True, single_line=True, strip=True, validate=validate.Length(1, 200))
    subject = Text(required=True, single_line=True, validate=validate.Length(1, SUBJECT_MAX))
    body_text = Text(required=True, validate=validate.Length(1, BODY_MAX))
    body_html = Text(allow_none=True, validate=validate.Length(max=BODY_MAX))
    from_name = Text(
        allow_none=True, single_line=True, strip=True, validate=validate.Length(max=200)
    )
    account_tags = fields.List(
        Text(single_line=True, strip=True, validate=validate.Length(1, 100)),
        allow_none=True,
        validate=validate.Length(1, 100),
        metadata={"description": "send through active accounts carrying any of these tags"},
    )
    account_ids = fields.List(
        StrictInteger(validate=validate.Range(1, INT4_MAX)),
        allow_none=True,
        validate=validate.Length(1, 1000),
        metadata={"description": "send through these accounts only; excludes account_tags"},
    )
    window = fields.Nested(WindowSchema, allow_none=True)
    daily_cap = StrictInteger(allow_none=True, validate=validate.Range(1, INT4_MAX))
    priority = StrictInteger(
        load_default=1,
        validate=validate.Range(1, PRIORITY_MAX),
        metadata={
            "description": "share of its client's capacity against the client's other "
            "running campaigns (2 gets twice the share of 1)"
        },
    )

    @ma.validates_schema
    def _one_selection(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("account_tags") and data.get("account_ids"):
            raise ma.ValidationError("give account_tags or account_ids, not both", "account_ids")

    @ma.post_load
    def _unique(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for key in ("account_tags", "account_ids"):
            if data.get(key):
                data[key] = dedupe(data[key])
        return data


class CampaignCreateSchema(CampaignFieldsSchema):
    recipients = RecipientRows(load_default=list)


EMAIL_COLUMN_DOC = (
    "the header of the column that holds the addresses (case-insensitive), when the "
    "importer does not recognise it or finds several"
)


class CampaignUploadSchema(ma.Schema):
    """multipart/form-data: the CSV in `file`, the other fields as form fields."""

    file = Upload(
        required=True,
        metadata={
            "description": "the recipients as CSV; header row names the fields, one column is email"
        },
    )
    name = fields.String(required=True)
    subject = fields.String(required=True)
    body_text = fields.String(required=True)
    body_html = fields.String()
    from_name = fields.String()
    account_tags = fields.String(metadata={"description": "comma-separated, or the field repeated"})
    account_ids = fields.String(metadata={"description": "comma-separated, or the field repeated"})
    window = fields.String(metadata={"description": "the window object as a JSON string"})
    daily_cap = fields.Integer()
    priority = fields.Integer(validate=validate.Range(1, PRIORITY_MAX))
    email_column = fields.String(metadata={"description": EMAIL_COLUMN_DOC})


# Form fields that may hold several values (repeated or comma-separated).
LIST_FORM_FIELDS = ("account_tags", "account_ids")


def form_to_json(form: Any) -> dict[str, Any]:
    """Multipart form fields -> the JSON shape CampaignFieldsSchema loads: the same checks
    apply to both forms of the request. Raises ValidationError naming the field."""
    data: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        if key in LIST_FORM_FIELDS:
            parts = [p.strip() for v in values for p in v.split(",") if p.strip()]
            if key == "account_ids":
                data[key] = [int(p) if p.isdigit() and len(p) < 12 else p for p in parts]
            else:
                data[key] = parts
            continue
        if len(values) > 1:
            raise ma.ValidationError({key: ["given more than once"]})
        value = values[0]
        if key == "window":
            try:
                data[key] = json.loads(value) if value.strip() else None
            except ValueError:
                raise ma.ValidationError({key: ["must be a JSON object"]}) from None
        elif key in ("daily_cap", "priority"):
            data[key] = (
                int(value) if value.strip().isdigit() and len(value) < 12 else (value or None)
            )
        else:
            data[key] = value
    return {k: v for k, v in data.items() if v != []}


class RecipientsAddSchema(ma.Schema):
    recipients = RecipientRows(required=True)


class RecipientsUploadSchema(ma.Schema):
    file = Upload(required=True, metadata={"description": "the recipients as CSV"})
    email_column = fields.String(metadata={"description": EMAIL_COLUMN_DOC})


class RejectedSchema(ma.Schema):
    invalid = fields.Integer(required=True)
    duplicate = fields.Integer(required=True)
    suppressed = fields.Integer(required=True)


class ImportErrorSchema(ma.Schema):
    row = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "CSV line, or index in the JSON list"},
    )
    email = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True)


class ImportWarningsSchema(ma.Schema):
    blank_fields = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={
            "description": "for each field the templates use, how many imported recipients "
            "have no value (they get an empty string); fields with none are left out"
        },
    )
    messages = fields.List(fields.String(), required=True)


class ImportReportSchema(ma.Schema):
    imported = fields.Integer(required=True)
    rejected = fields.Nested(RejectedSchema, required=True)
    errors = fields.List(
        fields.Nested(ImportErrorSchema),
        required=True,
        metadata={"description": "why rows were rejected (the first ones, up to a limit)"},
    )
    warnings = fields.Nested(ImportWarningsSchema, required=True)


class CampaignCreatedSchema(ImportReportSchema):
    id = fields.Integer(required=True)


CountsSchema = ma.Schema.from_dict(
    {status.value: fields.Integer(required=True) for status in RecipientStatus},
    name="RecipientCountsSchema",
)


class CampaignSchema(ma.Schema):
    id = fields.Integer(required=True)
    client_id = fields.Integer(required=True)
    name = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([s.value for s in CampaignStatus])
    )
    counts = fields.Nested(
        CountsSchema,
        required=True,
        metadata={"description": "recipients by status; every status is present"},
    )
    subject = fields.String(required=True)
    body_text = fields.String(required=True)
    body_html = fields.String(required=True, allow_none=True)
    from_name = fields.String(required=True, allow_none=True)
    account_tags = fields.List(fields.String(), required=True, allow_none=True)
    account_ids = fields.List(fields.Integer(), required=True, allow_none=True)
    window = fields.Nested(WindowSchema, required=True, allow_none=True)
    daily_cap = fields.Integer(required=True, allow_none=True)
    priority = fields.Integer(required=True)
    field_names = fields.List(fields.String(), required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    started_at = fields.DateTime(required=True, allow_none=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    # Why it is paused: a guard's reason (content refusals ...) or "paused by an operator".
    paused_reason = fields.String(required=True, allow_none=True)
    paused_by = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "who paused it: operator or guard"},
    )
    pause_details = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "the figures that decided a guard's pause (rates, counts)"},
    )


class CampaignPageSchema(PageSchema):
    items = fields.List(fields.Nested(CampaignSchema), required=True)


class RecipientQuerySchema(PageQuerySchema):
    status = fields.String(
        validate=validate.OneOf([s.value for s in RecipientStatus]),
        metadata={"description": "only recipients in this status"},
    )


class RecipientSchema(ma.Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    domain = fields.String(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([s.value for s in RecipientStatus])
    )
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(required=True, allow_none=True)
    account_id = fields.Integer(required=True, allow_none=True)
    message_id = fields.String(required=True, allow_none=True)
    last_smtp_code = fields.Integer(required=True, allow_none=True)
    last_smtp_text = fields.String(required=True, allow_none=True)
    fields_ = fields.Dict(required=True, data_key="fields", attribute="fields")
    sent_at = fields.DateTime(required=True, allow_none=True)
    updated_at = fields.DateTime(required=True)


class RecipientPageSchema(PageSchema):
    items = fields.List(fields.Nested(RecipientSchema), required=True)
