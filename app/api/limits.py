"""GET /limits, PUT/DELETE /limits/<scope>/<key>."""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from app.api import require_json_body
from app.api.errors import error_responses
from app.api.schemas.common import INT4_MAX, StrictInteger
from app.db import unit_of_work
from app.models import SCOPES
from app.services.limit_overrides import (
    KEY_MAX,
    delete_override,
    effective_limits,
    set_override,
)
from app.services.limits import make_limiter

blp = Blueprint("limits", __name__, description="Rate limits in force per scope, and overrides")
blp.before_request(require_json_body)

SCOPE_NAMES = list(SCOPES)
# The path parameters as the server checks them (app.services.limit_overrides).
PATH_PARAMETERS = [
    {
        "in": "path",
        "name": "scope",
        "required": True,
        "schema": {"type": "string", "enum": SCOPE_NAMES},
    },
    {
        "in": "path",
        "name": "key",
        "required": True,
        "description": "`*` for system; the account id; the client id; a domain; or, for "
        "a freemail sending domain, an account's address",
        "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX},
    },
]


class OverrideInSchema(Schema):
    class Meta:
        unknown = RAISE

    per_minute = StrictInteger(allow_none=True, validate=validate.Range(0, INT4_MAX))
    per_day = StrictInteger(allow_none=True, validate=validate.Range(0, INT4_MAX))


class OverrideOutSchema(Schema):
    scope = fields.String(required=True)
    client_id = fields.Integer(
        allow_none=True, metadata={"description": "null for the system scope"}
    )
    key = fields.String(required=True)
    per_minute = fields.Integer(allow_none=True)
    per_day = fields.Integer(allow_none=True)


class UsedSchema(Schema):
    """Sends in the sliding window right now; null where the scope has no such window."""

    minute = fields.Integer(required=True, allow_none=True)
    day = fields.Integer(required=True, allow_none=True)


class EffectiveLimitSchema(Schema):
    key = fields.String(required=True)
    per_minute = fields.Integer(allow_none=True)
    per_day = fields.Integer(allow_none=True)
    override = fields.Nested(OverrideInSchema, allow_none=True)
    used = fields.Nested(UsedSchema, required=True)
    accounts = fields.List(
        fields.Integer(),
        metadata={
            "description": "sending_domain only: the accounts sharing this window. An own "
            "domain's accounts share its key; a freemail account (FREEMAIL_DOMAINS) has its "
            "own, its lower-cased address; an override of a bare freemail domain sets each "
            "of its accounts' windows"
        },
    )


class ScopesSchema(Schema):
    system = fields.List(fields.Nested(EffectiveLimitSchema))
    account = fields.List(fields.Nested(EffectiveLimitSchema))
    sending_domain = fields.List(fields.Nested(EffectiveLimitSchema))
    recipient_domain = fields.List(fields.Nested(EffectiveLimitSchema))
    client = fields.List(fields.Nested(EffectiveLimitSchema))


class LimitsSchema(Schema):
    client_id = fields.Integer(required=True)
    scopes = fields.Nested(ScopesSchema, required=True)
    defaults = fields.Dict(required=True)


@blp.route("")
@blp.response(200, LimitsSchema)
@error_responses(blp, 401)
def list_limits() -> dict[str, Any]:
    """The limits in force for the key's client: the system's, the client's own caps
    (`client`), its accounts, sending domains and recipient-domain overrides."""
    limiter = make_limiter(current_app.extensions["redis"], current_app.extensions["settings"])
    with unit_of_work() as session:
        return effective_limits(
            session, current_app.extensions["settings"], limiter, client_id=g.client_id
        )


@blp.route("/<string:scope>/<path:key>", methods=["PUT"], parameters=PATH_PARAMETERS)
@blp.arguments(OverrideInSchema)
@blp.response(200, OverrideOutSchema)
@error_responses(blp, 400, 401, 403, 404, 415, 422)
def put_limit(body: dict[str, Any], scope: str, key: str) -> Any:
    """Set an override for the key's client; `system` and `client` need an admin key."""
    with unit_of_work() as session:
        return set_override(
            session,
            current_app.extensions["settings"],
            scope,
            key,
            body.get("per_minute"),
            body.get("per_day"),
            client_id=g.client_id,
            is_admin=g.api_key_is_admin,
        )


@blp.route("/<string:scope>/<path:key>", methods=["DELETE"], parameters=PATH_PARAMETERS)
@blp.response(204)
@error_responses(blp, 401, 403, 404, 422)
def delete_limit(scope: str, key: str) -> None:
    with unit_of_work() as session:
        delete_override(
            session,
            current_app.extensions["settings"],
            scope,
            key,
            client_id=g.client_id,
            is_admin=g.api_key_is_admin,
        )
