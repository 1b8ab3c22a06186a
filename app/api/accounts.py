"""/api/v1/accounts: the sender pool."""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint

from app.api import require_json_body
from app.api.errors import error_responses
from app.api.schemas.accounts import (
    AccountCreateSchema,
    AccountListSchema,
    AccountSchema,
    AccountUpdateSchema,
    PauseSchema,
)
from app.db import unit_of_work
from app.models import Account
from app.services import accounts

blp = Blueprint("accounts", __name__, description="Sender accounts and their pool state")
blp.before_request(require_json_body)

ID = "<int:account_id>"


def _state(*rows: Account) -> list[dict[str, Any]]:
    with unit_of_work() as session:
        return accounts.with_pool_state(
            session, rows, current_app.extensions["settings"], current_app.extensions["redis"]
        )


@blp.route("")
@blp.response(200, AccountListSchema)
@error_responses(blp, 401)
def list_accounts() -> dict[str, Any]:
    with unit_of_work() as session:
        rows = accounts.list_accounts(session, client_id=g.client_id)
    return {"items": _state(*rows)}


@blp.route("", methods=["POST"])
@blp.arguments(AccountCreateSchema)
@blp.response(201, AccountSchema)
@error_responses(blp, 400, 401, 409, 415)
def create_account(data: dict[str, Any]) -> dict[str, Any]:
    """Create an account; the provider preset fills host, port, security, username and
    daily_limit when they are not given. The password is stored encrypted."""
    with unit_of_work() as session:
        account = accounts.create_account(
            session, data, current_app.extensions["settings"], client_id=g.client_id
        )
    return _state(account)[0]


@blp.route(f"/{ID}")
@blp.response(200, AccountSchema)
@error_responses(blp, 401, 404)
def get_account(account_id: int) -> dict[str, Any]:
    with unit_of_work() as session:
        account = accounts.get_account(session, account_id, client_id=g.client_id)
    return _state(account)[0]


@blp.route(f"/{ID}", methods=["PATCH"])
@blp.arguments(AccountUpdateSchema)
@blp.response(200, AccountSchema)
@error_responses(blp, 400, 401, 404, 409, 415)
def update_account(data: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Change any field but the provider; a new password is re-encrypted, null removes it."""
    with unit_of_work() as session:
        account = accounts.update_account(
            session, account_id, data, current_app.extensions["settings"], client_id=g.client_id
        )
    return _state(account)[0]


@blp.route(f"/{ID}", methods=["DELETE"])
@blp.response(204)
@error_responses(blp, 401, 404, 409)
def delete_account(account_id: int) -> None:
    """Refused (409) while messages are queued or sending on the account."""
    with unit_of_work() as session:
        accounts.delete_account(session, account_id, client_id=g.client_id)


@blp.route(f"/{ID}/pause", methods=["POST"])
@blp.arguments(PauseSchema)
@blp.response(200, AccountSchema)
@error_responses(blp, 400, 401, 404, 409, 415)
def pause_account(data: dict[str, Any], account_id: int) -> dict[str, Any]:
    """Take an active (or paused) account out of rotation; 409 for a disabled one."""
    with unit_of_work() as session:
        account = accounts.pause_account(
            session,
            account_id,
            client_id=g.client_id,
            reason=data.get("reason"),
            until=data.get("until"),
        )
    return _state(account)[0]


@blp.route(f"/{ID}/resume", methods=["POST"])
@blp.response(200, AccountSchema)
@error_responses(blp, 401, 404, 409)
def resume_account(account_id: int) -> dict[str, Any]:
    """Return a paused or disabled account to rotation (failure count reset); 409 when
    it is active."""
    with unit_of_work() as session:
        account = accounts.resume_account(session, account_id, client_id=g.client_id)
    return _state(account)[0]
