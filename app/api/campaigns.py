"""/api/v1/campaigns: campaigns from JSON or a CSV upload, their recipients and states."""

from __future__ import annotations

from typing import Any, BinaryIO, cast

import marshmallow as ma
from flask import current_app, g, request
from flask_smorest import Blueprint, abort

from app.api import MULTIPART, accepts_upload, json_body, require_json_body
from app.api.errors import error_responses
from app.api.schemas.campaigns import (
    CampaignCreatedSchema,
    CampaignCreateSchema,
    CampaignFieldsSchema,
    CampaignPageSchema,
    CampaignSchema,
    CampaignUploadSchema,
    ImportReportSchema,
    RecipientPageSchema,
    RecipientQuerySchema,
    RecipientsAddSchema,
    RecipientsUploadSchema,
    form_to_json,
)
from app.api.schemas.common import PageQuerySchema
from app.api.schemas.forecast import ForecastSchema
from app.db import unit_of_work
from app.errors import InvalidInput, PayloadTooLarge
from app.services import campaigns
from app.services.forecast import campaign_forecast

blp = Blueprint("campaigns", __name__, description="Campaigns, their recipients and states")
blp.before_request(require_json_body)

ID = "<int:campaign_id>"
EMAIL_COLUMN_MAX = 200


def _body_doc(json_schema: type[ma.Schema], upload_schema: type[ma.Schema]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema},
                MULTIPART: {"schema": upload_schema},
            },
        }
    }


def _load(schema: ma.Schema, data: Any) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ma.ValidationError as exc:
        abort(422, messages=exc.messages)
    return loaded


def _upload(form_schema: ma.Schema) -> tuple[dict[str, Any], BinaryIO, str | None]:
    """The multipart form: the CSV in `file`, `email_column` (which header holds the
    addresses, when the importer cannot tell), other fields checked by `form_schema`, the
    same schema (but for `recipients`) the JSON form is loaded with."""
    _refuse_oversized_upload()
    for name in request.files:
        if name != "file":
            raise InvalidInput(f"{name}: Unknown field.", field=name)
        if len(request.files.getlist(name)) > 1:
            raise InvalidInput("file: send one CSV file per request", field="file")
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("file: Missing data for required field (the CSV).", field="file")
    form = request.form.copy()
    email_column = _email_column(form.poplist("email_column"))
    try:
        data = form_to_json(form)
    except ma.ValidationError as exc:
        abort(422, messages=exc.messages)
    return _load(form_schema, data), cast(BinaryIO, upload.stream), email_column


def _email_column(values: list[str]) -> str | None:
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput("email_column: given more than once", field="email_column")
    name = values[0].strip()
    if not name or len(name) > EMAIL_COLUMN_MAX or "\n" in name or "\r" in name:
        raise InvalidInput(
            f"email_column: must be a header name of the file (1 to {EMAIL_COLUMN_MAX} "
            "characters on one line)",
            field="email_column",
        )
    return name


def _refuse_oversized_upload() -> None:
    """An upload over IMPORT_MAX_BYTES (plus room for the form fields) is refused from its
    Content-Length, before Werkzeug spools it, with the limit named; one within it is
    measured again by the importer."""
    settings = current_app.extensions["settings"]
    declared = request.content_length or 0
    if declared > (current_app.config.get("MAX_CONTENT_LENGTH") or declared):
        raise PayloadTooLarge(
            f"the upload is {declared:,} bytes, over the import limit of "
            f"{settings.import_max_bytes:,} bytes for uploads (IMPORT_MAX_BYTES); "
            "`flask --app app import CAMPAIGN_ID FILE.csv` imports a bigger local file "
            "(bounded by IMPORT_MAX_ROWS only)",
            field="file",
        )


def _rows(schema: ma.Schema) -> dict[str, Any]:
    """The JSON form, refusing lists over the import row limit before looking at them."""
    body = json_body()
    limit = current_app.extensions["settings"].import_max_rows
    rows = body.get("recipients") if isinstance(body, dict) else None
    if isinstance(rows, list) and len(rows) > limit:
        raise PayloadTooLarge(
            f"at most {limit} recipients per request; send more in further requests",
            field="recipients",
        )
    return _load(schema, body)


@blp.route("")
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, CampaignPageSchema)
@error_responses(blp, 401)
def list_campaigns(query: dict[str, Any]) -> dict[str, Any]:
    """Newest first, with status and counts; paginated (keyset)."""
    with unit_of_work() as session:
        items, last_id = campaigns.list_campaigns(
            session, client_id=g.client_id, before_id=query.get("cursor"), limit=query["limit"]
        )
    return {"items": items, "next_cursor": last_id}


@blp.route("", methods=["POST"])
@accepts_upload
@blp.doc(**_body_doc(CampaignCreateSchema, CampaignUploadSchema))
@blp.response(201, CampaignCreatedSchema)
@error_responses(blp, 400, 401, 413, 415, 422)
def create_campaign() -> dict[str, Any]:
    """Create a draft campaign with its recipients, from JSON or from a CSV upload
    (multipart: `file`, optionally `email_column`, plus the other fields as form fields).
    Templates are checked: a syntax error, a variable no recipient carries (without
    `| default`), a render over the template limits or one that fails for a recipient is
    a 422 naming the template. `warnings.blank_fields` counts, for each field the
    templates use, the recipients without a value (they get ""). Nothing is stored unless
    everything is valid."""
    settings = current_app.extensions["settings"]
    csv: BinaryIO | None = None
    email_column = None
    if request.mimetype == MULTIPART:
        data, csv, email_column = _upload(CampaignFieldsSchema())
    else:
        data = _rows(CampaignCreateSchema())
    with unit_of_work() as session:
        campaign, report = campaigns.create_campaign(
            session, data, settings, csv=csv, email_column=email_column, client_id=g.client_id
        )
    return {"id": campaign.id, **report.as_dict()}


@blp.route(f"/{ID}")
@blp.response(200, CampaignSchema)
@error_responses(blp, 401, 404)
def get_campaign(campaign_id: int) -> dict[str, Any]:
    with unit_of_work() as session:
        return campaigns.get_campaign(session, campaign_id, client_id=g.client_id)


@blp.route(f"/{ID}/recipients", methods=["POST"])
@accepts_upload
@blp.doc(**_body_doc(RecipientsAddSchema, RecipientsUploadSchema))
@blp.response(201, ImportReportSchema)
@error_responses(blp, 400, 401, 404, 409, 413, 415, 422)
def add_recipients(campaign_id: int) -> dict[str, Any]:
    """Add recipients as JSON or a CSV upload (`file`, optionally `email_column`); 409 once
    the campaign is completed or cancelled; checked against the templates as at creation,
    with the same warnings."""
    settings = current_app.extensions["settings"]
    if request.mimetype == MULTIPART:
        _, csv, email_column = _upload(ma.Schema())
        with unit_of_work() as session:
            report = campaigns.add_recipients(
                session,
                campaign_id,
                settings,
                csv=csv,
                email_column=email_column,
                client_id=g.client_id,
            )
    else:
        rows = _rows(RecipientsAddSchema())["recipients"]
        with unit_of_work() as session:
            report = campaigns.add_recipients(
                session, campaign_id, settings, rows=rows, client_id=g.client_id
            )
    return report.as_dict()


@blp.route(f"/{ID}/recipients")
@blp.arguments(RecipientQuerySchema, location="query")
@blp.response(200, RecipientPageSchema)
@error_responses(blp, 401, 404)
def list_recipients(query: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Paginated by id (keyset): pass `next_cursor` back as `cursor`; it is null on the
    last page."""
    with unit_of_work() as session:
        rows, last_id = campaigns.list_recipients(
            session,
            campaign_id,
            status=query.get("status"),
            after_id=query.get("cursor"),
            limit=query["limit"],
            client_id=g.client_id,
        )
    return {"items": rows, "next_cursor": last_id}


@blp.route(f"/{ID}/start", methods=["POST"])
@blp.response(200, CampaignSchema)
@error_responses(blp, 401, 404, 409)
def start_campaign(campaign_id: int) -> dict[str, Any]:
    """draft -> running; 409 when it is not a draft or has no recipients."""
    with unit_of_work() as session:
        return campaigns.change_status(session, campaign_id, "start", client_id=g.client_id)


@blp.route(f"/{ID}/pause", methods=["POST"])
@blp.response(200, CampaignSchema)
@error_responses(blp, 401, 404, 409)
def pause_campaign(campaign_id: int) -> dict[str, Any]:
    """running -> paused: the dispatcher stops claiming its recipients."""
    with unit_of_work() as session:
        return campaigns.change_status(session, campaign_id, "pause", client_id=g.client_id)


@blp.route(f"/{ID}/resume", methods=["POST"])
@blp.response(200, CampaignSchema)
@error_responses(blp, 401, 404, 409)
def resume_campaign(campaign_id: int) -> dict[str, Any]:
    """paused -> running."""
    with unit_of_work() as session:
        return campaigns.change_status(session, campaign_id, "resume", client_id=g.client_id)


@blp.route(f"/{ID}/cancel", methods=["POST"])
@blp.response(200, CampaignSchema)
@error_responses(blp, 401, 404, 409)
def cancel_campaign(campaign_id: int) -> dict[str, Any]:
    """draft, running or paused -> cancelled. Recipients keep their status; nothing more
    is claimed for sending."""
    with unit_of_work() as session:
        return campaigns.change_status(session, campaign_id, "cancel", client_id=g.client_id)


@blp.route(f"/{ID}/forecast")
@blp.response(200, ForecastSchema)
@error_responses(blp, 401, 404)
def forecast_campaign(campaign_id: int) -> dict[str, Any]:
    """The schedule from the real state: the limiter's windows, the limits in force, the
    accounts' caps and warm-up ramps, the daily cap and the sending window; per day the
    sends, from which accounts and to which domains, the limit that binds, and the finish
    day (null beyond a 365-day horizon). A draft or paused campaign is forecast as if it
    started now."""
    app = current_app
    with unit_of_work() as session:
        return campaign_forecast(
            session,
            campaign_id,
            app.extensions["settings"],
            app.extensions["redis"],
            client_id=g.client_id,
        )
