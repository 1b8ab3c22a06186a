"""/api/v1/clients: the installation's clients. Admin keys see and manage every client; any
other key sees only its own, and another client's id answers like an id that does not exist."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from app.api import require_json_body
from app.api.errors import error_responses
from app.api.schemas.clients import (
    ClientCreateSchema,
    ClientListSchema,
    ClientPauseSchema,
    ClientSchema,
    ClientStatsQuerySchema,
    ClientStatsSchema,
    ClientUpdateSchema,
)
from app.db import unit_of_work
from app.errors import Forbidden
from app.models import Client
from app.services import client_stats, clients

blp = Blueprint("clients", __name__, description="Clients: their settings, pause state and figures")
blp.before_request(require_json_body)

ID = "<int:client_id>"
F = TypeVar("F", bound=Callable[..., Any])


def admin_only(action: str) -> Callable[[F], F]:
    """403 for a key that is not an admin's. Put it right under @blp.route, so it runs
    before the body is parsed: a key that may not act hears that first."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not g.api_key_is_admin:
                raise Forbidden(f"{action} needs an admin key; this key is not one")
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _visible(session: Session, client_id: int) -> Client:
    # Another client's id gets the very answer a missing id gets: no existence leak.
    if not g.api_key_is_admin and client_id != g.client_id:
        raise clients.client_not_found(client_id)
    return clients.get_client(session, client_id)


@blp.route("")
@blp.response(200, ClientListSchema)
@error_responses(blp, 401)
def list_clients() -> dict[str, Any]:
    """Every client for an admin key; the key's own client for any other."""
    with unit_of_work() as session:
        if g.api_key_is_admin:
            rows = clients.list_clients(session)
        else:
            rows = [clients.get_client(session, g.client_id)]
    return {"items": rows}


@blp.route("", methods=["POST"])
@admin_only("creating a client")
@blp.arguments(ClientCreateSchema)
@blp.response(201, ClientSchema)
@error_responses(blp, 400, 401, 403, 409, 415)
def create_client(data: dict[str, Any]) -> Client:
    """Admin keys only. 409 when a client of that name exists."""
    with unit_of_work() as session:
        return clients.create_client(
            session, data["name"], telegram_chat_id=data.get("telegram_chat_id")
        )


@blp.route(f"/{ID}")
@blp.response(200, ClientSchema)
@error_responses(blp, 401, 404)
def get_client(client_id: int) -> Client:
    with unit_of_work() as session:
        return _visible(session, client_id)


@blp.route(f"/{ID}", methods=["PATCH"])
@admin_only("changing a client")
@blp.arguments(ClientUpdateSchema)
@blp.response(200, ClientSchema)
@error_responses(blp, 400, 401, 403, 404, 409, 415)
def update_client(data: dict[str, Any], client_id: int) -> Client:
    """Admin keys only: name (unique), telegram_chat_id (null clears it)."""
    with unit_of_work() as session:
        return clients.update_client(session, client_id, data)


@blp.route(f"/{ID}/pause", methods=["POST"])
@admin_only("pausing a client")
@blp.arguments(ClientPauseSchema)
@blp.response(200, ClientSchema)
@error_responses(blp, 400, 401, 403, 404, 409, 415)
def pause_client(data: dict[str, Any], client_id: int) -> Client:
    """Admin keys only: active -> paused with the reason given (default "paused by an
    operator"); 409 when it is paused already. Writes a client_paused event."""
    with unit_of_work() as session:
        return clients.pause_client(
            session, client_id, reason=data.get("reason"), api_key_id=g.api_key_id
        )


@blp.route(f"/{ID}/resume", methods=["POST"])
@admin_only("resuming a client")
@blp.response(200, ClientSchema)
@error_responses(blp, 401, 403, 404, 409)
def resume_client(client_id: int) -> Client:
    """Admin keys only: paused -> active, the reason cleared; 409 when it is active.
    Writes a client_resumed event."""
    with unit_of_work() as session:
        return clients.resume_client(session, client_id, api_key_id=g.api_key_id)


@blp.route(f"/{ID}/stats")
@blp.arguments(ClientStatsQuerySchema, location="query")
@blp.response(200, ClientStatsSchema)
@error_responses(blp, 401, 404)
def get_stats(query: dict[str, Any], client_id: int) -> dict[str, Any]:
    """Recipients and campaigns by status; sends, bounces, deferrals, failures,
    unsubscribes and complaints per UTC day and per account over `days`; their rates."""
    with unit_of_work() as session:
        _visible(session, client_id)
        return client_stats.client_stats(session, client_id, days=query["days"])
