"""The warm-up ramp: an account's cap today, the daily advance-or-hold, and the ramp so far.

The cap on ramp day n is min(daily_limit, start + step x (n - 1)), with the account's own
start and step or else WARMUP_START / WARMUP_STEP; cap_today() here is the one function
every reader uses (the limiter's windows, the dispatcher, the API).

Once a day (worker.jobs.warmup, at WARMUP_HOUR in WARMUP_TIMEZONE) each warming account's
previous local day is judged. It advances one ramp day only when that day was healthy:
- at least WARMUP_MIN_SENDS sends (a ramp counts days of sending, not of calendar),
- bounces under WARMUP_MAX_BOUNCE_PERCENT of sent + bounced (that day's events),
- not paused or disabled that day (an authentication failure at send time disables, a
  failed health check at AUTH is one too), and no failed health check at AUTH,
- no blacklist listing of its domain or IP (the latest check, app.services.blacklist),
- its domain's SPF and DKIM passing (the latest check, app.services.sender_domains). No
  verdict yet (never checked, or the resolver could not tell) holds as well: passing is
  not shown, and the daily DNS checks run before the ramp, so it lasts a day at most.
Otherwise it holds, and the reasons are kept on the account and in warmup_days.

Idempotent per day: the day's row is inserted first (unique account + day) and only the
run that inserted it moves warmup_day, with a compare-and-set on the day it read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import Account, AccountStatus, RampOutcome, WarmupDay
from app.settings import Settings

DayChecks = Callable[[Session, Account], list[str]]

DAY_EVENTS = text(
    """
    SELECT
        count(*) FILTER (WHERE type = 'sent') AS sent,
        count(*) FILTER (WHERE type = 'bounced') AS bounced,
        array_remove(array_agg(DISTINCT type) FILTER (
            WHERE type IN ('account_paused', 'account_disabled')), NULL) AS pauses
    FROM events
    WHERE account_id = :account_id AND created_at >= :start AND created_at < :end
      AND type IN ('sent', 'bounced', 'account_paused', 'account_disabled')
    """
)

AUTH_FAILURES = text(
    """
    SELECT count(*) FROM health_checks
    WHERE account_id = :account_id AND checked_at >= :start AND checked_at < :end
      AND NOT ok AND stage = 'auth'
    """
)


def cap_today(account: Account, settings: Settings) -> int:
    return account.cap_today(settings.warmup_start, settings.warmup_step)


def is_warming(account: Account, settings: Settings) -> bool:
    """Still below its daily limit on the ramp (a finished ramp is judged no more)."""
    return account.warmup_enabled and cap_today(account, settings) < account.daily_limit


def judged_day(now: datetime, settings: Settings) -> date:
    """The local day a ramp run at `now` judges: the one before today in WARMUP_TIMEZONE."""
    return now.astimezone(ZoneInfo(settings.warmup_timezone)).date() - timedelta(days=1)


def day_bounds(day: date, settings: Settings) -> tuple[datetime, datetime]:
    """The UTC instants that begin and end a local day (23 or 25 hours across DST)."""
    zone = ZoneInfo(settings.warmup_timezone)
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


@dataclass
class RampResult:
    day: date
    advanced: list[int] = field(default_factory=list)
    held: dict[int, str] = field(default_factory=dict)  # account id -> reason
    already: int = 0  # accounts whose day was judged by an earlier run

    def log_fields(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "advanced": len(self.advanced),
            "held": len(self.held),
            "already_judged": self.already,
        }


def run_ramp(
    session: Session, settings: Settings, *, now: datetime, dns_checks: DayChecks
) -> RampResult:
    """Judges the day before `now` for every warming account. `dns_checks(session,
    account)` names the blacklist and SPF/DKIM problems of the account now (none: [])."""
    day = judged_day(now, settings)
    start, end = day_bounds(day, settings)
    result = RampResult(day)
    accounts = session.scalars(
        select(Account)
        .where(
            Account.warmup_enabled.is_(True),
            Account.status != AccountStatus.DISABLED.value,
            Account.created_at < end,
        )
        .order_by(Account.id)
    ).all()
    for account in accounts:
        if not is_warming(account, settings):
            continue
        judged = _judge(session, settings, account, day, start, end, dns_checks)
        if judged is None:
            result.already += 1
        elif judged.outcome is RampOutcome.ADVANCED:
            result.advanced.append(account.id)
        else:
            result.held[account.id] = judged.reason or ""
    return result


@dataclass(frozen=True)
class _Judged:
    outcome: RampOutcome
    reason: str | None


def _judge(
    session: Session,
    settings: Settings,
    account: Account,
    day: date,
    start: datetime,
    end: datetime,
    dns_checks: DayChecks,
) -> _Judged | None:
    bounds = {"account_id": account.id, "start": start, "end": end}
    figures = session.execute(DAY_EVENTS, bounds).one()
    sent, bounced = int(figures.sent), int(figures.bounced)
    reasons = day_problems(settings, sent, bounced, list(figures.pauses or []))
    if session.execute(AUTH_FAILURES, bounds).scalar_one():
        reasons.append("a health check failed to authenticate")
    reasons.extend(dns_checks(session, account))
    outcome = RampOutcome.HELD if reasons else RampOutcome.ADVANCED
    reason = "; ".join(reasons) or None
    ramp_day = account.warmup_day
    inserted = session.execute(
        insert(WarmupDay)
        .values(
            account_id=account.id,
            day=day,
            warmup_day=ramp_day,
            cap=cap_today(account, settings),
            sent=sent,
            bounced=bounced,
            outcome=outcome.value,
            reason=reason,
            details={"bounce_percent": _percent(bounced, sent), "problems": reasons},
        )
        .on_conflict_do_nothing(constraint="uq_warmup_days_account_day")
        .returning(WarmupDay.id)
    ).scalar_one_or_none()
    if inserted is None:
        return None  # judged already (an earlier run today, or one running now)
    if outcome is RampOutcome.ADVANCED:
        values: dict[str, Any] = {
            "warmup_day": Account.warmup_day + 1,
            "warmup_held_at": None,
            "warmup_hold_reason": None,
        }
    else:
        values = {
            "warmup_held_at": func.now(),
            "warmup_hold_reason": f"{day.isoformat()}: {reason}",
        }
    session.execute(
        update(Account)
        .where(Account.id == account.id, Account.warmup_day == ramp_day)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _Judged(outcome, reason)


def day_problems(settings: Settings, sent: int, bounced: int, pauses: Sequence[str]) -> list[str]:
    problems = []
    if sent < settings.warmup_min_sends:
        problems.append(f"{sent} sent, fewer than WARMUP_MIN_SENDS ({settings.warmup_min_sends})")
    rate = _percent(bounced, sent)
    if bounced and rate >= settings.warmup_max_bounce_percent:
        problems.append(
            f"bounce rate {rate:.1f} % ({bounced} of {sent + bounced}) is not under "
            f"{settings.warmup_max_bounce_percent:g} %"
        )
    if "account_disabled" in pauses:
        problems.append("the account was disabled (authentication or policy failure)")
    if "account_paused" in pauses:
        problems.append("the account was paused")
    return problems


def _percent(bounced: int, sent: int) -> float:
    total = sent + bounced
    return round(100.0 * bounced / total, 2) if total else 0.0


def ramp_history(session: Session, account: Account, settings: Settings) -> dict[str, Any]:
    """The ramp day by day, oldest first, with today's cap and what tomorrow's would be."""
    rows = session.scalars(
        select(WarmupDay).where(WarmupDay.account_id == account.id).order_by(WarmupDay.day)
    ).all()
    return {
        "account_id": account.id,
        "client_id": account.client_id,
        "name": account.name,
        "warmup": account.warmup_enabled,
        "warmup_day": account.warmup_day,
        "warmup_start": (
            settings.warmup_start if account.warmup_start is None else account.warmup_start
        ),
        "warmup_step": settings.warmup_step if account.warmup_step is None else account.warmup_step,
        "daily_limit": account.daily_limit,
        "cap_today": cap_today(account, settings),
        "warmup_hold_reason": account.warmup_hold_reason,
        "complete": not is_warming(account, settings),
        "days": [
            {
                "day": row.day,
                "warmup_day": row.warmup_day,
                "cap": row.cap,
                "sent": row.sent,
                "bounced": row.bounced,
                "bounce_percent": row.details.get("bounce_percent", 0.0),
                "outcome": row.outcome,
                "reason": row.reason,
            }
            for row in rows
        ],
    }
