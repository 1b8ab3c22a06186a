"""/accounts, /accounts/new, /accounts/<id>: the sender pool, adding and editing an
account, pause / resume, and "test connection" (the health check, with its transcript).
Every figure comes from the services the API uses (app.services.accounts' pool state,
the blacklist and sender-authentication checks, the health check)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from app.db import unit_of_work
from app.errors import DomainError, InvalidInput
from app.models import Account, Event
from app.services import accounts as account_service
from app.services.forecast import cap_on_warmup_day
from app.services.health_checks import account_endpoint, probe_account, record_check
from app.services.warmup import ramp_history
from app.settings import Settings
from app.web import web
from app.web.account_form import (
    SECURITY_CHOICES,
    FormErrors,
    form_values,
    parse_account_form,
    presets,
)
from app.web.clients import current_client_id
from app.web.sender_status import auth_states, blacklist_states
from rotator.providers import REGISTRY

log = logging.getLogger(__name__)

RAMP_DAYS_SHOWN = 30
EVENTS_SHOWN = 10
ACCOUNT_EVENTS = ("account_paused", "account_resumed")


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _pool(session: Session, accounts: list[Account]) -> list[dict[str, Any]]:
    settings = _settings()
    rows = account_service.with_pool_state(
        session, accounts, settings, current_app.extensions["redis"]
    )
    blacklist = blacklist_states(session, accounts, settings)
    auth = auth_states(session, [a.sending_domain for a in accounts])
    for row in rows:
        row["blacklist"] = blacklist[row["id"]]
        row["auth"] = auth[row["sending_domain"].lower()]
    return rows


@web.route("/accounts")
def accounts() -> str:
    with unit_of_work() as session:
        pool = account_service.list_accounts(session, client_id=current_client_id())
        rows = _pool(session, pool)
        for row, account in zip(rows, pool, strict=True):
            row["ramp"] = ramp_points(account, _settings(), days=14)
    return render_template("web/accounts.html", active="accounts", rows=rows)


@web.route("/accounts/new", methods=["GET", "POST"])
def new_account() -> Response | str | tuple[str, int]:
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            data = parse_account_form(request.form, creating=True)
            with unit_of_work() as session:
                account = account_service.create_account(
                    session, data, _settings(), client_id=current_client_id()
                )
                account_id, name = account.id, account.name
        except FormErrors as exc:
            errors = exc.errors
        except DomainError as exc:
            errors = {exc.field or "form": exc.message}
        else:
            flash(f"Account {name} added. Test its connection before it sends.", "success")
            return redirect(url_for("web.account", account_id=account_id))
    page = render_template(
        "web/account_form.html",
        active="accounts",
        account=None,
        values=form_values(None, request.form if request.method == "POST" else None),
        errors=errors,
        providers=list(REGISTRY),
        presets=presets(),
        securities=SECURITY_CHOICES,
    )
    return (page, 422) if errors else page


@web.route("/accounts/<int:account_id>", methods=["GET", "POST"])
def account(account_id: int) -> Response | str | tuple[str, int]:
    """The account's state; POST: its settings changed (the edit form on this page)."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            data = parse_account_form(request.form, creating=False)
            with unit_of_work() as session:
                account_service.update_account(
                    session, account_id, data, _settings(), client_id=current_client_id()
                )
        except FormErrors as exc:
            errors = exc.errors
        except InvalidInput as exc:
            errors = {exc.field or "form": exc.message}
        except DomainError as exc:
            if exc.status == 404:
                raise
            errors = {exc.field or "form": exc.message}
        else:
            flash("Account saved.", "success")
            return redirect(url_for("web.account", account_id=account_id))
    page = _account_page(account_id, errors=errors, posted=request.method == "POST")
    return (page, 422) if errors else page


def _account_page(
    account_id: int,
    *,
    errors: dict[str, str] | None = None,
    posted: bool = False,
    check: dict[str, Any] | None = None,
) -> str:
    settings = _settings()
    with unit_of_work() as session:
        account = account_service.get_account(session, account_id, client_id=current_client_id())
        [row] = _pool(session, [account])
        ramp = ramp_points(account, settings, days=RAMP_DAYS_SHOWN)
        events = list(
            session.execute(
                select(Event)
                .where(Event.account_id == account_id, Event.type.in_(ACCOUNT_EVENTS))
                .order_by(Event.id.desc())
                .limit(EVENTS_SHOWN)
            ).scalars()
        )
        history = ramp_history(session, account, settings)
    return render_template(
        "web/account.html",
        active="accounts",
        a=row,
        ramp=ramp,
        history=history,
        events=events,
        check=check,
        values=form_values(row, request.form if posted else None),
        errors=errors or {},
        securities=SECURITY_CHOICES,
    )


@web.route("/accounts/<int:account_id>/pause", methods=["POST"])
def pause_account(account_id: int) -> Response:
    reason = request.form.get("reason", "").strip() or None
    with unit_of_work() as session:
        account_service.pause_account(
            session, account_id, client_id=current_client_id(), reason=reason, until=None
        )
    flash("Account paused: it sends nothing until you resume it.", "info")
    return redirect(url_for("web.account", account_id=account_id))


@web.route("/accounts/<int:account_id>/resume", methods=["POST"])
def resume_account(account_id: int) -> Response:
    with unit_of_work() as session:
        account_service.resume_account(session, account_id, client_id=current_client_id())
    flash("Account resumed: it is back in rotation.", "success")
    return redirect(url_for("web.account", account_id=account_id))


@web.route("/accounts/<int:account_id>/check", methods=["POST"])
def check_account(account_id: int) -> str:
    """Runs the health check now and shows its transcript (secrets masked by the probe)."""
    settings = _settings()
    with unit_of_work() as session:
        account = account_service.get_account(session, account_id, client_id=current_client_id())
        endpoint, email = account_endpoint(settings, account), account.email
    # No transaction is open while the server answers (HEALTH_CHECK_TIMEOUT_SECONDS a step).
    result = probe_account(settings, endpoint, email)
    with unit_of_work() as session:
        record_check(session, settings, account_id, result, now=datetime.now(UTC))
    log.info("web.account_checked", extra={"account_id": account_id, "ok": result.ok})
    check = {
        "ok": result.ok,
        "stage": result.stage,
        "error": result.error,
        "transcript": result.transcript,
        "duration_ms": result.duration_ms,
    }
    return _account_page(account_id, check=check)


def ramp_points(account: Account, settings: Settings, *, days: int) -> dict[str, Any]:
    """The warm-up ramp for the chart: the cap of each day from day 1 until the full daily
    limit (at most `days` of them around today), today's day marked."""
    first = max(account.warmup_day - days // 2, 1) if account.warmup_enabled else 1
    points: list[dict[str, Any]] = [
        {"day": d, "cap": cap_on_warmup_day(account, d, settings), "today": d == account.warmup_day}
        for d in range(first, first + days)
    ]
    if account.warmup_enabled:
        # Stop a few days after the ramp reaches the full limit: the rest is flat.
        full = next((i for i, p in enumerate(points) if p["cap"] >= account.daily_limit), None)
        if full is not None:
            points = points[: max(full + 3, account.warmup_day - first + 1)]
    top = max([p["cap"] for p in points] + [1])
    for p in points:
        p["height"] = round(100 * p["cap"] / top, 1)
    return {"points": points, "top": top, "warming": account.warmup_enabled}
