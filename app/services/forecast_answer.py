"""The forecast's answer, as the API and the web UI show it (app.services.forecast)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from app.models import Campaign
from app.services.forecast_model import Forecast, ForecastInput

# The answer names the biggest domains; the rest are counted (a list may have thousands).
DOMAINS_SHOWN = 200
DAY_DOMAINS_SHOWN = 50


def forecast_answer(
    campaign: Campaign,
    result: Forecast,
    data: ForecastInput,
    excluded: list[dict[str, Any]],
    notes: list[str],
    now: datetime,
    start: date,
    timezone: str,
    horizon: int,
) -> dict[str, Any]:
    def on(day: int | None) -> date | None:
        return None if day is None else start + timedelta(days=day)

    planned: dict[int, int] = {}
    for day in result.days:
        for account_id, n in day.by_account.items():
            planned[account_id] = planned.get(account_id, 0) + n
    days = [
        {
            "date": day.date,
            "day": day.index,
            "sends": day.sends,
            "binding": {
                "scope": day.binding.scope,
                "key": day.binding.key,
                "message": day.binding.message,
            },
            "by_account": [
                {"account_id": a, "sends": n} for a, n in sorted(day.by_account.items())
            ],
            "by_domain": [{"domain": d, "sends": n} for d, n in _largest(day.by_domain)],
            "other_domains": _rest(day.by_domain),
        }
        for day in result.days
    ]
    today = result.days[0] if result.days and result.days[0].index == 0 else None
    return {
        "campaign_id": campaign.id,
        "client_id": campaign.client_id,
        "status": campaign.status,
        "generated_at": now,
        "timezone": timezone,
        "start_date": start,
        "horizon_days": horizon,
        "to_send": result.total,
        "today": today.sends if today else 0,
        "finish_day": result.finish_day,
        "finish_date": on(result.finish_day),
        "beyond_horizon": result.finish_day is None,
        "left_after_horizon": result.left_after_horizon,
        "summary": _summary(result, on, horizon),
        "days": days,
        "domains": [
            {
                "domain": p.domain,
                "waiting": p.waiting,
                "per_day": p.per_day,
                "freemail": p.freemail,
                "finish_date": on(p.finish_day),
                "sending_days": p.days_sending,
                "message": p.message,
            }
            for p in sorted(result.domains, key=lambda p: (-p.waiting, p.domain))[:DOMAINS_SHOWN]
        ],
        "domains_total": len(result.domains),
        "accounts": [
            {
                "account_id": a.id,
                "name": a.name,
                "cap_today": a.cap(0),
                "counted_today": a.used_day0,
                "per_minute": a.per_minute,
                "available_from": on(a.available_from) if a.available_from else None,
                "planned": planned.get(a.id, 0),
            }
            for a in data.accounts
        ],
        "excluded_accounts": excluded,
        "assumptions": notes,
    }


def _largest(sends: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(sends.items(), key=lambda item: (-item[1], item[0]))[:DAY_DOMAINS_SHOWN]


def _rest(sends: dict[str, int]) -> dict[str, int]:
    """The domains a day's list leaves out (a list of thousands of small domains)."""
    rest = sorted(sends.values(), reverse=True)[DAY_DOMAINS_SHOWN:]
    return {"domains": len(rest), "sends": sum(rest)}


def _summary(result: Forecast, on: Any, horizon: int) -> str:
    if result.total == 0:
        return "Nothing is waiting to be sent."
    first = result.days[0] if result.days else None
    lead = f"{result.total:,} recipients to send"
    if first is not None:
        when = "today" if first.index == 0 else f"on {first.date.isoformat()}"
        lead += f"; {first.sends:,} {when}, bound by {first.binding.message}"
    if result.finish_day is None:
        return (
            f"{lead}. Not finished within the {horizon}-day horizon: "
            f"{result.left_after_horizon:,} still waiting beyond it."
        )
    return f"{lead}. Finishes on {on(result.finish_day).isoformat()} (day {result.finish_day + 1})."
