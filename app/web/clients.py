"""Which client the signed-in user works in: one at a time, chosen with the switcher in the
navigation (kept in the session), among the clients app.services.clients.visible_clients
gives them (their memberships; every client for an admin)."""

from __future__ import annotations

from typing import Any, cast

from flask import abort, flash, g, redirect, request, session, url_for
from flask_login import current_user
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from app.extensions import db
from app.models import Client
from app.services.clients import visible_clients
from app.web import safe_next, web

SESSION_KEY = "client_id"


def _clients() -> list[Client]:
    if "web_clients" not in g:
        g.web_clients = (
            visible_clients(cast(Session, db.session), current_user)
            if current_user.is_authenticated
            else []
        )
    clients: list[Client] = g.web_clients
    return clients


def current_client() -> Client:
    """The chosen client, or the user's first when none is chosen (or the chosen one is no
    longer theirs). A user in no client at all gets a 403 page: an operator must add them."""
    clients = _clients()
    if not clients:
        abort(403, "Your user is not a member of any client yet. Ask an admin to add you.")
    chosen = session.get(SESSION_KEY)
    for client in clients:
        if client.id == chosen:
            return client
    return clients[0]


def current_client_id() -> int:
    return current_client().id


def layout_clients() -> dict[str, Any]:
    if not current_user.is_authenticated:
        return {"clients": [], "current_client": None}
    clients = _clients()
    return {"clients": clients, "current_client": current_client() if clients else None}


@web.route("/client", methods=["POST"])
def switch_client() -> Response:
    wanted = request.form.get("client_id", "")
    ids = {c.id: c for c in _clients()}
    if not wanted.isdigit() or int(wanted) not in ids:
        abort(404)
    session[SESSION_KEY] = int(wanted)
    flash(f"Now working in {ids[int(wanted)].name}.", "info")
    # Ids of the previous client's pages mean nothing in this one: go to the list.
    back = safe_next(request.form.get("next"))
    section = (back or "/campaigns").split("/")[1] or "campaigns"
    target = {"accounts": "/accounts", "suppressions": "/suppressions", "domains": "/domains"}
    return redirect(target.get(section, url_for("web.campaigns")))
