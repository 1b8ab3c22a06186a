"""/api/v1/accounts: the sender pool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, g
from flask_smorest import Blueprint
from sqlalchemy import select

from app.api import require_json_body
from app.api.errors import error_responses
from app.api.schemas.accounts import (
    AccountCreateSchema,
    AccountListSchema,
    AccountSchema,
    AccountUpdateSchema,
    PauseSchema,
)
from app.api.schemas.warmup import HealthCheckResultSchema, WarmupSchema
from app.db import unit_of_work
from app.errors import NotFound
from app.models import Account
from app.services import accounts, warmup
from app.services.health_checks import account_endpoint, probe_account, record_check
from app.services.sender_domains import auth_warnings

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
    daily_limit when they are not given. The password is stored encrypted. `warnings`
    flags a sending domain whose SPF or DKIM fails (or was not checked yet)."""
    settings = current_app.extensions["settings"]
    with unit_of_work() as session:
        account = accounts.create_account(session, data, settings, client_id=g.client_id)
        warnings = auth_warnings(session, settings, account.sending_domain, account.provider)
    return {**_state(account)[0], "warnings": warnings}


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


@blp.route(f"/{ID}/warmup")
@blp.response(200, WarmupSchema)
@error_responses(blp, 401, 404)
def get_warmup(account_id: int) -> dict[str, Any]:
    """The warm-up ramp day by day: the cap, what was sent and bounced, advanced or held
    and why; with today's cap."""
    with unit_of_work() as session:
        account = accounts.get_account(session, account_id, client_id=g.client_id)
        return warmup.ramp_history(session, account, current_app.extensions["settings"])


@blp.route(f"/{ID}/check", methods=["POST"])
@blp.response(200, HealthCheckResultSchema)
@error_responses(blp, 401, 404)
def check_account(account_id: int) -> dict[str, Any]:
    """Run the SMTP health check now (connect, EHLO, STARTTLS, AUTH, NOOP, QUIT) and store
    it. A paused account whose pause has run out returns to rotation when it passes."""
    settings = current_app.extensions["settings"]
    with unit_of_work() as session:
        account = accounts.get_account(session, account_id, client_id=g.client_id)
        endpoint, email, client_id = (
            account_endpoint(settings, account),
            account.email,
            account.client_id,
        )
    # No transaction is open while the server answers (up to HEALTH_CHECK_TIMEOUT per step).
    result = probe_account(settings, endpoint, email)
    now = datetime.now(UTC)
    with unit_of_work() as session:
        outcome = record_check(session, settings, account_id, result, now=now)
        status = session.scalar(select(Account.status).where(Account.id == account_id))
    if status is None:
        raise NotFound(f"no account with id {account_id}")  # deleted while it was checked
    return {
        "account_id": account_id,
        "client_id": client_id,
        "ok": result.ok,
        "stage": result.stage,
        "error": result.error,
        "transcript": result.transcript,
        "duration_ms": result.duration_ms,
        "checked_at": now,
        "resumed": outcome.resumed,
        "status": status,
    }
