"""A campaign's forecast from the real state: the limiter's windows, the limits in force
(app.services.limits), the accounts' caps and warm-up ramps, the campaign's window and
daily cap, and its recipients still to send by domain. The day-by-day simulation is
app.services.forecast_model; this module loads its input and shapes its answer.

Assumptions, also returned with every forecast:
- a draft or paused campaign is forecast as if started (resumed) now;
- the warm-up ramp advances every day (the ramp job holds an unhealthy day: then later);
- a paused account with an end returns on that day; one without, a disabled one and one
  whose last health check failed send nothing;
- other running campaigns of the client share each account by priority while they have
  recipients waiting (their own domain limits are not simulated); other clients' use of
  the system scope counts only as far as it is in today's windows already."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis import Redis
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import (
    Account,
    AccountStatus,
    Campaign,
    CampaignStatus,
    DomainBackoff,
    Recipient,
    Suppression,
)
from app.services.forecast_answer import forecast_answer
from app.services.forecast_model import (
    HORIZON_DAYS,
    AccountInput,
    Cap,
    Competitor,
    DomainInput,
    ForecastInput,
    simulate,
)
from app.services.forecast_usage import Counted
from app.services.limits import (
    DAY,
    SYSTEM_KEY,
    LimitTable,
    load_limits,
    recipient_domain_key,
)
from app.settings import Settings
from rotator.limiter import Scope, Window

WAITING = ("pending", "deferred")
ASSUMPTIONS = (
    "A draft or paused campaign is forecast as if it started (or resumed) now.",
    "Warm-up ramps advance every day; a day the ramp holds moves the finish later.",
    "A paused account with an end returns that day; paused without an end, disabled or "
    "failing its health check, it sends nothing.",
    "Other running campaigns of the client share each account by priority while they have "
    "recipients waiting.",
    "Today counts what the limiter holds now; later days start with full daily limits.",
)


@dataclass(frozen=True)
class Calendar:
    start: date
    minutes: tuple[int, ...]
    close_day0: datetime  # the last open moment of day 0 (or now when it is closed)
    zone: ZoneInfo


def campaign_forecast(
    session: Session,
    campaign_id: int,
    settings: Settings,
    redis: Redis,
    *,
    client_id: int | None,
    now: datetime | None = None,
    horizon: int = HORIZON_DAYS,
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or (client_id is not None and campaign.client_id != client_id):
        raise NotFound(f"no campaign with id {campaign_id}")
    calendar = sending_calendar(campaign.window, now, horizon)
    notes = list(ASSUMPTIONS)
    if campaign.status in (CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value):
        waiting: dict[str, int] = {}
        notes.insert(0, f"The campaign is {campaign.status}: nothing more is sent.")
    else:
        waiting = _waiting_by_domain(session, campaign, notes)
    table = load_limits(session, settings)
    accounts, excluded = _usable_accounts(session, campaign, calendar, now)
    counted = Counted(session, redis, calendar.close_day0, [a for a, _ in accounts], notes)
    competitors = _competitors(session, _running_others(session, campaign), accounts)
    # One round trip for every recipient domain's window (a list may have thousands).
    counted.day(
        [
            Window(Scope.RECIPIENT_DOMAIN, recipient_domain_key(campaign.client_id, d), DAY, 1)
            for d in waiting
        ]
    )
    backoffs = _backoff_days(session, campaign.client_id, list(waiting), calendar)
    data = ForecastInput(
        start=calendar.start,
        minutes=calendar.minutes,
        accounts=tuple(
            _account_input(a, table, settings, counted, horizon, competitors) for a in accounts
        ),
        domains=tuple(
            _domain_input(name, n, campaign.client_id, table, settings, counted, backoffs)
            for name, n in waiting.items()
        ),
        sending_domains=_sending_domain_caps(accounts, campaign.client_id, table, counted),
        campaign=_campaign_cap(campaign, counted),
        client=_cap(
            table.client(campaign.client_id), Scope.CLIENT, str(campaign.client_id), counted
        ),
        system=_cap(table.system(), Scope.SYSTEM, SYSTEM_KEY, counted),
        priority=campaign.priority,
        competitors=tuple(
            Competitor(o.id, n, o.priority, o.daily_cap) for o, n in competitors.values()
        ),
    )
    result = simulate(data, horizon)
    return forecast_answer(
        campaign, result, data, excluded, notes, now, calendar.start, str(calendar.zone), horizon
    )


def sending_calendar(window: dict[str, Any] | None, now: datetime, horizon: int) -> Calendar:
    """Open minutes per local date in the window's time zone, day 0 counted from `now`
    (the hours are whole, as app.services.windows.in_window reads them)."""
    window = window or {}
    zone = ZoneInfo(window.get("timezone") or "UTC")
    local_now = now.astimezone(zone)
    days = window.get("days")
    start_hour, end_hour = window.get("start_hour", 0), window.get("end_hour", 24)
    minutes: list[int] = []
    close_day0 = now
    for offset in range(horizon):
        day = local_now.date() + timedelta(days=offset)
        if days is not None and day.weekday() not in days:
            minutes.append(0)
            continue
        opens = datetime.combine(day, time(), zone) + timedelta(hours=start_hour)
        closes = datetime.combine(day, time(), zone) + timedelta(hours=end_hour)
        if offset == 0:
            opens = max(opens, now)
            if closes > now:
                close_day0 = closes
        minutes.append(max(int((closes - opens).total_seconds() // 60), 0))
    return Calendar(local_now.date(), tuple(minutes), close_day0, zone)


def _waiting_by_domain(session: Session, campaign: Campaign, notes: list[str]) -> dict[str, int]:
    """Waiting recipients by domain, less those suppressed since they were imported (the
    dispatcher drops them: a global suppression, or one of the campaign's client)."""
    suppressed = exists().where(
        or_(
            Suppression.value == Recipient.email,
            and_(Suppression.kind == "domain", Suppression.value == Recipient.domain),
        ),
        or_(Suppression.client_id.is_(None), Suppression.client_id == campaign.client_id),
    )
    rows = session.execute(
        select(Recipient.domain, func.count(), func.count().filter(suppressed))
        .where(Recipient.campaign_id == campaign.id, Recipient.status.in_(WAITING))
        .group_by(Recipient.domain)
        # The dispatcher claims the oldest rows first: domains in the order they start.
        .order_by(func.min(Recipient.id))
    ).tuples()
    waiting: dict[str, int] = {}
    dropped = 0
    for domain, n, n_suppressed in rows:
        dropped += n_suppressed
        if n > n_suppressed:
            waiting[domain] = n - n_suppressed
    if dropped:
        notes.insert(0, f"{dropped:,} waiting recipients are suppressed now and will not be sent.")
    return waiting


def campaign_allows(campaign: Campaign, account: Account) -> bool:
    """The dispatcher's rule (worker.jobs.assignment.campaign_allows, which app code may
    not import): the client's accounts, narrowed by the campaign's ids or tags."""
    if account.client_id != campaign.client_id:
        return False
    if campaign.account_ids:
        return account.id in campaign.account_ids
    if campaign.account_tags:
        return bool(set(campaign.account_tags) & set(account.tags or ()))
    return True


def _usable_accounts(
    session: Session, campaign: Campaign, calendar: Calendar, now: datetime
) -> tuple[list[tuple[Account, int]], list[dict[str, Any]]]:
    """(account, first day it sends) for each allowed account that will send, and the
    others with the reason they will not."""
    rows = session.execute(
        select(Account).where(Account.client_id == campaign.client_id).order_by(Account.id)
    ).scalars()
    usable: list[tuple[Account, int]] = []
    excluded: list[dict[str, Any]] = []
    for account in rows:
        if not campaign_allows(campaign, account):
            continue
        reason = None
        first_day = 0
        if account.status == AccountStatus.DISABLED.value:
            reason = "disabled"
        elif account.status == AccountStatus.PAUSED.value:
            if account.paused_until is None:
                reason = f"paused: {account.paused_reason or 'no end set'}"
            else:
                ends = account.paused_until.astimezone(calendar.zone).date()
                first_day = max((ends - calendar.start).days, 0)
        elif account.last_health_ok is False:
            reason = "its last health check failed"
        if reason is None:
            usable.append((account, first_day))
        else:
            excluded.append({"account_id": account.id, "name": account.name, "reason": reason})
    return usable, excluded


def _account_input(
    item: tuple[Account, int],
    table: LimitTable,
    settings: Settings,
    counted: Counted,
    horizon: int,
    competitors: dict[int, tuple[Campaign, int]],
) -> AccountInput:
    account, first_day = item
    limit = table.account(account)
    override = table.overrides.get(("account", str(account.id), account.client_id))
    caps: list[int] = []
    day = account.warmup_day
    for _ in range(horizon):
        ramp = cap_on_warmup_day(account, day, settings)
        caps.append(
            min(ramp, override.per_day) if override and override.per_day is not None else ramp
        )
        if not account.warmup_enabled or ramp >= account.daily_limit:
            break
        day += 1
    used = counted.day([Window(Scope.ACCOUNT, str(account.id), DAY, limit.per_day or 0)])[0]
    return AccountInput(
        id=account.id,
        name=account.name,
        sending_key=table.sending_domain_key(account),
        caps=tuple(caps),
        per_minute=limit.per_minute,
        used_day0=used,
        shared_with=tuple(
            (other.id, float(other.priority))
            for other, _ in competitors.values()
            if campaign_allows(other, account)
        ),
        available_from=first_day,
    )


def cap_on_warmup_day(account: Account, warmup_day: int, settings: Settings) -> int:
    """The account's cap on a given warm-up day, as Account.cap_today computes today's."""
    if not account.warmup_enabled:
        return account.daily_limit
    own_ramp = getattr(account, "cap_on_day", None)  # accounts with a ramp of their own
    if own_ramp is not None:
        return int(own_ramp(warmup_day, settings.warmup_start, settings.warmup_step))
    ramp = settings.warmup_start + settings.warmup_step * max(warmup_day - 1, 0)
    return min(account.daily_limit, ramp)


def _domain_input(
    domain: str,
    waiting: int,
    client_id: int,
    table: LimitTable,
    settings: Settings,
    counted: Counted,
    backoffs: dict[str, int],
) -> DomainInput:
    limit = table.recipient_domain(domain, client_id)
    per_day = limit.per_day if limit.per_day is not None else waiting
    key = recipient_domain_key(client_id, domain)
    used = counted.day([Window(Scope.RECIPIENT_DOMAIN, key, DAY, per_day)])[0]
    return DomainInput(
        domain, waiting, per_day, used, settings.is_freemail(domain), backoffs.get(domain, 0)
    )


def _backoff_days(
    session: Session, client_id: int, domains: list[str], calendar: Calendar
) -> dict[str, int]:
    """Domains that asked the client's senders to slow down past today's sending hours:
    the first day each takes mail again (the dispatcher holds them until then)."""
    if not domains:
        return {}
    rows = session.execute(
        select(DomainBackoff.domain, DomainBackoff.until).where(
            DomainBackoff.client_id == client_id,
            DomainBackoff.domain.in_(domains),
            DomainBackoff.until > calendar.close_day0,
        )
    ).tuples()
    return {
        domain: max((until.astimezone(calendar.zone).date() - calendar.start).days, 1)
        for domain, until in rows
    }


def _sending_domain_caps(
    accounts: list[tuple[Account, int]], client_id: int, table: LimitTable, counted: Counted
) -> dict[str, Cap]:
    keys = sorted({table.sending_domain_key(a) for a, _ in accounts})
    return {
        key: _cap(table.sending_domain(key, client_id), Scope.SENDING_DOMAIN, key, counted)
        for key in keys
    }


def _cap(limit: Any, scope: Scope, key: str, counted: Counted) -> Cap:
    used = 0
    if limit.per_day is not None:
        used = counted.day([Window(scope, key, DAY, limit.per_day)])[0]
    return Cap(limit.per_day, limit.per_minute, used)


def _campaign_cap(campaign: Campaign, counted: Counted) -> Cap:
    if campaign.daily_cap is None:
        return Cap()
    window = Window(Scope.CAMPAIGN, str(campaign.id), DAY, campaign.daily_cap)
    return Cap(campaign.daily_cap, None, counted.day([window])[0])


def _running_others(session: Session, campaign: Campaign) -> list[Campaign]:
    return list(
        session.execute(
            select(Campaign)
            .where(
                Campaign.client_id == campaign.client_id,
                Campaign.status == CampaignStatus.RUNNING.value,
                Campaign.id != campaign.id,
            )
            .order_by(Campaign.id)
        ).scalars()
    )


def _competitors(
    session: Session, others: list[Campaign], accounts: list[tuple[Account, int]]
) -> dict[int, tuple[Campaign, int]]:
    """The other running campaigns with recipients waiting that may use one of these
    accounts, with their waiting count."""
    if not others:
        return {}
    waiting = dict(
        session.execute(
            select(Recipient.campaign_id, func.count())
            .where(
                Recipient.campaign_id.in_([o.id for o in others]),
                Recipient.status.in_(WAITING),
            )
            .group_by(Recipient.campaign_id)
        ).tuples()
    )
    return {
        o.id: (o, waiting[o.id])
        for o in others
        if waiting.get(o.id) and any(campaign_allows(o, a) for a, _ in accounts)
    }
