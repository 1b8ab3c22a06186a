"""GET /blacklist and GET /domains: the latest DNS checks of the caller's sending IPs and
domains (an admin key: every client's, and the relays no account uses yet)."""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint

from app.api.errors import error_responses
from app.api.schemas.dns_checks import (
    BlacklistListSchema,
    BlacklistQuerySchema,
    DomainListSchema,
    DomainQuerySchema,
)
from app.db import unit_of_work
from app.services.blacklist import list_blacklist
from app.services.sender_domains import list_domains

blacklist_blp = Blueprint(
    "blacklist", __name__, description="Blacklist state per sending IP/domain"
)
domains_blp = Blueprint("domains", __name__, description="Sender authentication per domain")


def _scope() -> int | None:
    return None if g.api_key_is_admin else g.client_id


@blacklist_blp.route("")
@blacklist_blp.arguments(BlacklistQuerySchema, location="query")
@blacklist_blp.response(200, BlacklistListSchema)
@error_responses(blacklist_blp, 401, 422)
def get_blacklist(query: dict[str, Any]) -> dict[str, Any]:
    """The latest check per target: status (clean / listed / unknown), the lists that
    list it, each list's answer, a note (why unknown) and the time."""
    with unit_of_work() as session:
        items = list_blacklist(
            session,
            current_app.extensions["settings"],
            client_id=_scope(),
            status=query.get("status"),
            kind=query.get("kind"),
        )
    return {"items": items}


@domains_blp.route("")
@domains_blp.arguments(DomainQuerySchema, location="query")
@domains_blp.response(200, DomainListSchema)
@error_responses(domains_blp, 401, 422)
def get_domains(query: dict[str, Any]) -> dict[str, Any]:
    """Per sending domain: SPF, DKIM, DMARC, MX and (for own IPs) PTR, each pass / fail /
    unknown with what is published and the fix."""
    with unit_of_work() as session:
        items = list_domains(
            session,
            current_app.extensions["settings"],
            client_id=_scope(),
            domain=query.get("domain"),
        )
    return {"items": items}
