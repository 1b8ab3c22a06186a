"""/api/v1/suppressions: addresses and domains no campaign sends to."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint

from app.api import require_json_body
from app.api.errors import error_responses
from app.api.schemas.suppressions import (
    SuppressionCreateSchema,
    SuppressionDeleteQuerySchema,
    SuppressionPageSchema,
    SuppressionQuerySchema,
    SuppressionSchema,
)
from app.db import unit_of_work
from app.models import ApiKey, Suppression, SuppressionKind
from app.services import suppressions

blp = Blueprint("suppressions", __name__, description="Suppressed addresses and domains")
blp.before_request(require_json_body)


@blp.route("")
@blp.arguments(SuppressionQuerySchema, location="query")
@blp.response(200, SuppressionPageSchema)
@error_responses(blp, 401)
def list_suppressions(query: dict[str, Any]) -> dict[str, Any]:
    """The suppressions the key's client honours, each marked `global` or `client`;
    paginated by id (keyset); `q` filters by substring."""
    with unit_of_work() as session:
        rows, last_id = suppressions.list_suppressions(
            session,
            client_id=g.client_id,
            query=query.get("q"),
            after_id=query.get("cursor"),
            limit=query["limit"],
        )
    return {"items": rows, "next_cursor": last_id}


@blp.route("", methods=["POST"])
@blp.arguments(SuppressionCreateSchema)
@blp.response(201, SuppressionSchema, description="Suppressed now")
@blp.alt_response(
    200, schema=SuppressionSchema, description="Already suppressed: the existing row", success=True
)
@error_responses(blp, 400, 401, 415)
def add_suppression(data: dict[str, Any]) -> tuple[Suppression, int]:
    """Suppress an address or a whole domain. `bounced` and `complained` are global (every
    client honours them), as is a `manual` block from an admin key; an `unsubscribed` one,
    or a `manual` one from a client's key, stops that client's campaigns. Its recipients
    still waiting to be sent, in the campaigns it stops, become `suppressed`. Idempotent:
    an existing value answers 200."""
    kind = SuppressionKind.EMAIL if "email" in data else SuppressionKind.DOMAIN
    owner = suppressions.owner_of(
        data["reason"], client_id=g.client_id, is_admin=g.api_key_is_admin
    )
    with unit_of_work() as session:
        row, created = suppressions.add_suppression(
            session, kind, data[kind.value], reason=data["reason"], client_id=owner
        )
    return row, 201 if created else 200


@blp.route("/<value>", methods=["DELETE"])
@blp.arguments(SuppressionDeleteQuerySchema, location="query")
@blp.response(204)
@error_responses(blp, 401, 403, 404, 409, 422)
def delete_suppression(query: dict[str, Any], value: str) -> None:
    """Lift a suppression (an address or a domain); an unsubscribe or a complaint only with
    `?confirm=true`. A client's key lifts its own client's rows; a global one (403 for a
    client's key) needs an admin key, which lifts the global row first. Every deletion
    leaves a `suppression_deleted` event naming the API key. Recipients already marked
    suppressed stay so."""
    with unit_of_work() as session:
        key = session.get(ApiKey, g.api_key_id)
        who = {"api_key_id": g.api_key_id, "api_key_name": key.name if key else None}
        suppressions.delete_suppression(
            session,
            value,
            client_id=g.client_id,
            is_admin=g.api_key_is_admin,
            confirmed=query["confirm"],
            who=who,
        )
