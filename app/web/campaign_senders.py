"""The wizard's senders and window step: which accounts may send (all of the client's,
those with some tags, or chosen ones), the sending window and the daily cap, read from the
form into the shape the campaign service (and the API) takes."""

from __future__ import annotations

from typing import Any

from app.db import unit_of_work
from app.errors import InvalidInput
from app.services.accounts import list_accounts

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COMMON_ZONES = (
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Warsaw",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Sao_Paulo", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
    "Australia/Sydney",
)  # fmt: skip


def sender_choices(client_id: int) -> dict[str, Any]:
    with unit_of_work() as session:
        accounts = list_accounts(session, client_id=client_id)
    tags = sorted({tag for account in accounts for tag in (account.tags or ())})
    return {
        "accounts": [
            {"id": a.id, "name": a.name, "email": a.email, "status": a.status, "tags": a.tags}
            for a in accounts
        ],
        "tags": tags,
        "weekdays": WEEKDAYS,
        "zones": COMMON_ZONES,
    }


def senders_from_form(form: Any) -> dict[str, Any]:
    mode = form.get("senders", "all")
    if mode == "tags":
        tags = [t for t in form.getlist("account_tags") if t.strip()]
        if not tags:
            raise InvalidInput("choose at least one tag", field="account_tags")
        return {"account_tags": tags}
    if mode == "accounts":
        ids = [int(i) for i in form.getlist("account_ids") if i.isdigit()]
        if not ids:
            raise InvalidInput("choose at least one account", field="account_ids")
        return {"account_ids": ids}
    return {}


def window_from_form(form: Any) -> dict[str, Any] | None:
    if not form.get("use_window"):
        return None
    days = [int(d) for d in form.getlist("days") if d.isdigit()]
    start, end = form.get("start_hour", ""), form.get("end_hour", "")
    if not days:
        raise InvalidInput("choose at least one weekday", field="window.days")
    if not (start.isdigit() and end.isdigit()):
        raise InvalidInput("choose the hours", field="window.start_hour")
    return {
        "timezone": form.get("timezone", "").strip() or "UTC",
        "days": days,
        "start_hour": int(start),
        "end_hour": int(end),
    }
