"""The every-minute guards task (`sendfleet.guards`): the safety net behind the inline checks.

1. Rates: every campaign, account and (client, sending domain) with a bounce or failure in
   the last SWEEP_LOOKBACK is checked by worker.jobs.rate_guards. The inline check runs in
   the send's own transaction and cannot see what other workers have not committed yet;
   this pass sees everything, and catches outcomes written by paths that do not check.
   Which ones is one scan of the last minutes' events (the BRIN index on created_at), so
   its cost follows the recent refusals, not the size of the campaigns.
2. Capacity: an active account that has used GUARD_CAP_ALERT_PERCENT of its cap today
   alerts once per UTC day (the limiter's day window, one Redis round trip for all).
3. Resumes: an account that went back to rotation alerts, whoever resumed it (an operator,
   the web UI, the health check, a pause that ran out). The key is the one the health check
   uses (`account-resumed:<id>`), so a resume it announced already is not announced twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, AccountStatus
from app.services.accounts import with_pool_state
from app.settings import Settings
from worker.jobs import alerts, rate_guards

log = logging.getLogger(__name__)

SWEEP_LOOKBACK = timedelta(minutes=5)
MAX_PAIRS = 2000  # (campaign, account) pairs per pass; the next pass takes the rest
CAP_ALERT_QUIET_SECONDS = 2 * 86400  # the key names the date: once per account per day

RECENT_REFUSALS = text(
    """
    SELECT DISTINCT e.campaign_id, e.account_id, a.client_id, a.sending_domain
    FROM events e JOIN accounts a ON a.id = e.account_id
    WHERE e.created_at > :since AND e.type IN ('bounced', 'failed')
      AND e.campaign_id IS NOT NULL
    LIMIT :limit
    """
)

RECENT_RESUMES = text(
    """
    SELECT e.id, e.account_id, e.data, a.client_id, a.name
    FROM events e JOIN accounts a ON a.id = e.account_id
    WHERE e.created_at > :since AND e.type = 'account_resumed'
    ORDER BY e.id
    LIMIT :limit
    """
)


@dataclass
class SweepResult:
    campaigns_paused: list[int] = field(default_factory=list)
    accounts_paused: list[int] = field(default_factory=list)
    domains_paused: list[str] = field(default_factory=list)
    cap_alerts: list[int] = field(default_factory=list)
    resume_alerts: list[int] = field(default_factory=list)

    def any(self) -> bool:
        return any(
            (self.campaigns_paused, self.accounts_paused, self.domains_paused, self.cap_alerts)
        )

    def log_fields(self) -> dict[str, Any]:
        return {
            "campaigns_paused": self.campaigns_paused,
            "accounts_paused": self.accounts_paused,
            "domains_paused": self.domains_paused,
            "cap_alerts": self.cap_alerts,
            "resume_alerts": self.resume_alerts,
        }


def run_guards() -> SweepResult:
    settings: Settings = current_app.extensions["settings"]
    redis: Redis = current_app.extensions["redis"]
    now = datetime.now(UTC)
    result = SweepResult()
    with unit_of_work() as session:
        check_rates(session, settings, now, result)
    with unit_of_work() as session:
        alert_capacity(session, settings, redis, now, result)
        alert_resumes(session, now, result)
    return result


def check_rates(session: Session, settings: Settings, now: datetime, result: SweepResult) -> None:
    """Campaigns first: a bad list explains its own bounces and then counts against no
    account (rate_guards leaves out campaigns it paused)."""
    rows = session.execute(
        RECENT_REFUSALS, {"since": now - SWEEP_LOOKBACK, "limit": MAX_PAIRS}
    ).all()
    for campaign_id in sorted({row.campaign_id for row in rows}):
        if rate_guards.check_campaign(session, settings, campaign_id, now):
            result.campaigns_paused.append(campaign_id)
    for account_id in sorted({row.account_id for row in rows}):
        if rate_guards.check_account(session, settings, account_id, now):
            result.accounts_paused.append(account_id)
    for client_id, domain in sorted({(row.client_id, row.sending_domain) for row in rows}):
        if rate_guards.check_domain(session, settings, client_id=client_id, domain=domain, now=now):
            result.domains_paused.append(f"{client_id}:{domain}")


def alert_capacity(
    session: Session, settings: Settings, redis: Redis, now: datetime, result: SweepResult
) -> None:
    accounts = session.execute(
        select(Account).where(Account.status == AccountStatus.ACTIVE.value).order_by(Account.id)
    ).scalars().all()  # fmt: skip
    share = settings.guard_cap_alert_percent / 100
    day = f"{now:%Y-%m-%d}"
    for state in with_pool_state(session, accounts, settings, redis):
        cap, used = state["cap_today"], state["sent_today"]
        if cap <= 0 or used < cap * share:
            continue
        sent = alerts.notify(
            f"account-cap:{state['id']}:{day}",
            f"Account {state['id']} ({state['name']}) has used {used} of its {cap} sends today "
            f"({100 * used / cap:.0f} %, alert at {settings.guard_cap_alert_percent:g} %).",
            client_id=state["client_id"],
            dedup_seconds=CAP_ALERT_QUIET_SECONDS,
        )
        if sent:
            result.cap_alerts.append(state["id"])


def alert_resumes(session: Session, now: datetime, result: SweepResult) -> None:
    rows = session.execute(RECENT_RESUMES, {"since": now - SWEEP_LOOKBACK, "limit": 500}).all()
    for row in rows:
        data = row.data or {}
        why = data.get("reason") or ("by an operator" if data.get("source") == "api" else "")
        sent = alerts.notify(
            f"account-resumed:{row.account_id}",
            f"Account {row.account_id} ({row.name}) is back in rotation"
            + (f": {why}" if why else "."),
            client_id=row.client_id,
        )
        if sent:
            result.resume_alerts.append(row.account_id)
