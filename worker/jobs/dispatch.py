"""The dispatcher: turns due recipients into queued sends, inside every rate limit.

One dispatcher runs at a time cluster-wide (a Redis lock). Each pass:

1. claims due `pending`/`deferred` recipients of running campaigns that are inside their
   sending window, with `SELECT ... FOR UPDATE SKIP LOCKED LIMIT n`;
2. drops suppressed ones (status `suppressed`, an event);
3. picks an account for each (selection.order_candidates) and reserves capacity in every
   limit scope at once (one Lua call for the whole batch);
4. marks the lucky ones `queued` with their account and reservation, and gives the others a
   `next_attempt_at` from the limiter's retry-after, so they are not rescanned every tick;
5. commits, and only then enqueues one send task per account group.

Nothing sleeps or spins waiting for a limit: what cannot go now gets a time to come back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import current_app as current_celery
from flask import current_app
from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, AccountStatus, Campaign, CampaignStatus
from app.services.limits import LimitTable, account_day_window, load_limits
from app.services.windows import in_window
from app.settings import Settings
from rotator.limiter import Decision, Limiter, Scope, Window
from rotator.selection import Candidate, order_candidates
from worker.jobs import alerts
from worker.jobs.locks import RedisLock

log = logging.getLogger(__name__)

SEND_QUEUE = "sendfleet.send"
# When a campaign has no usable account at all, look again after this long.
NO_ACCOUNT_RETRY = timedelta(minutes=1)

CLAIM_DUE = text(
    """
    SELECT id, campaign_id, email, domain
    FROM recipients
    WHERE campaign_id = ANY(:campaign_ids)
      AND status IN ('pending', 'deferred')
      AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
    ORDER BY next_attempt_at NULLS FIRST, id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)

# The rows are locked by CLAIM_DUE in this transaction, so the status guard is a belt to
# the braces of SKIP LOCKED: a row can only move from a state the dispatcher may move.
MARK_QUEUED = text(
    """
    UPDATE recipients AS r
    SET status = 'queued', account_id = v.account_id, reservation = v.token,
        queued_at = :now, updated_at = :now
    FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                 unnest(CAST(:account_ids AS int[])) AS account_id,
                 unnest(CAST(:tokens AS text[])) AS token) AS v
    WHERE r.id = v.id AND r.status IN ('pending', 'deferred')
    RETURNING r.id, r.campaign_id, r.account_id
    """
)

POSTPONE = text(
    """
    UPDATE recipients AS r
    SET next_attempt_at = v.at, updated_at = :now
    FROM (SELECT unnest(CAST(:ids AS bigint[])) AS id,
                 unnest(CAST(:ats AS timestamptz[])) AS at) AS v
    WHERE r.id = v.id AND r.status IN ('pending', 'deferred')
    """
)

MARK_SUPPRESSED = text(
    """
    WITH moved AS (
        UPDATE recipients AS r SET status = 'suppressed', updated_at = :now
        WHERE r.id = ANY(:ids) AND r.status IN ('pending', 'deferred')
        RETURNING r.id, r.campaign_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, data)
    SELECT 'suppressed', campaign_id, id, '{"stage": "dispatch"}'::jsonb FROM moved
    """
)

SUPPRESSED_AMONG = text(
    """
    SELECT value FROM suppressions
    WHERE value = ANY(:emails) OR (kind = 'domain' AND value = ANY(:domains))
    """
)

QUEUED_EVENTS = text(
    """
    INSERT INTO events (type, campaign_id, recipient_id, account_id)
    SELECT 'queued', unnest(CAST(:campaign_ids AS int[])), unnest(CAST(:ids AS bigint[])),
           unnest(CAST(:account_ids AS int[]))
    """
)

IN_FLIGHT = text("SELECT count(*) FROM recipients WHERE status IN ('queued', 'sending')")

COMPLETE_CAMPAIGNS = text(
    """
    WITH done AS (
        UPDATE campaigns AS c SET status = 'completed', completed_at = :now, updated_at = :now
        WHERE c.status = 'running' AND NOT EXISTS (
            SELECT 1 FROM recipients r WHERE r.campaign_id = c.id
              AND r.status IN ('pending', 'deferred', 'queued', 'sending'))
        RETURNING c.id
    )
    INSERT INTO events (type, campaign_id)
    SELECT 'campaign_completed', id FROM done
    RETURNING campaign_id
    """
)


@dataclass
class DispatchResult:
    skipped: bool = False
    claimed: int = 0
    queued: int = 0
    suppressed: int = 0
    postponed: int = 0
    completed_campaigns: list[int] = field(default_factory=list)
    batches: list[tuple[int, list[int]]] = field(default_factory=list)

    def add(self, other: DispatchResult) -> None:
        self.claimed += other.claimed
        self.queued += other.queued
        self.suppressed += other.suppressed
        self.postponed += other.postponed
        self.completed_campaigns += other.completed_campaigns
        self.batches += other.batches

    def log_fields(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "queued": self.queued,
            "suppressed": self.suppressed,
            "postponed": self.postponed,
            "completed": self.completed_campaigns,
        }


@dataclass
class _Due:
    id: int
    campaign_id: int
    email: str
    domain: str
    candidates: list[Candidate]
    tried: set[int] = field(default_factory=set)
    # Accounts that had no capacity left today when this recipient asked.
    exhausted: set[int] = field(default_factory=set)
    # Earliest moment any refusing account or domain frees, when nothing could take it.
    retry_at: float | None = None

    def wait(self, until: float) -> None:
        self.retry_at = until if self.retry_at is None else min(self.retry_at, until)


@dataclass
class _Pool:
    """The usable accounts of one pass, with the capacity left in each today."""

    accounts: dict[int, Account]
    remaining: dict[int, int]
    frees_at: dict[int, float] = field(default_factory=dict)
    blocked_until: dict[int, float] = field(default_factory=dict)
    # Offers of the current round not yet answered by the limiter, per account.
    tentative: Counter[int] = field(default_factory=Counter)

    def candidates_for(self, campaign: Campaign) -> list[Candidate]:
        return [
            Candidate(
                account_id=a.id,
                provider=a.provider,
                sending_domain=a.sending_domain,
                remaining_today=self.remaining[a.id],
            )
            for a in self.accounts.values()
            if _campaign_allows(campaign, a)
        ]


def _campaign_allows(campaign: Campaign, account: Account) -> bool:
    if campaign.account_ids:
        return account.id in campaign.account_ids
    if campaign.account_tags:
        return bool(set(campaign.account_tags) & set(account.tags or ()))
    return True


def run_dispatch() -> DispatchResult:
    """One dispatcher pass, as the beat task runs it (inside an app context)."""
    settings: Settings = current_app.extensions["settings"]
    redis: Redis = current_app.extensions["redis"]
    budget = max(settings.dispatch_interval_seconds, 2.0)
    # A pass stops claiming after `budget`; the TTL only matters when a worker dies holding
    # the lock, and then it is how long dispatching pauses.
    lock = RedisLock(redis, "dispatch", ttl_seconds=budget + 10)
    if not lock.acquire():
        return DispatchResult(skipped=True)
    try:
        return dispatch_until_done(redis, settings, budget_seconds=budget)
    finally:
        lock.release()


def dispatch_until_done(
    redis: Redis, settings: Settings, *, budget_seconds: float
) -> DispatchResult:
    """Repeats batches while due work can go and the budget lasts; each batch is committed
    and its tasks enqueued before the next one is claimed."""
    limiter = Limiter(redis)
    total = DispatchResult()
    deadline = time.monotonic() + budget_seconds
    while True:
        with unit_of_work() as session:
            result = dispatch_batch(session, limiter, settings, now=datetime.now(UTC))
        enqueue(result.batches)
        total.add(result)
        if result.queued == 0 or time.monotonic() >= deadline:
            return total


def enqueue(batches: list[tuple[int, list[int]]]) -> None:
    """After the commit only: a task must never find its rows not yet visible. A failure here
    leaves the rows `queued`; recovery returns them to `pending`."""
    for account_id, ids in batches:
        current_celery.send_task("sendfleet.send_batch", args=[account_id, ids], queue=SEND_QUEUE)


def dispatch_batch(
    session: Session, limiter: Limiter, settings: Settings, *, now: datetime
) -> DispatchResult:
    result = DispatchResult()
    result.completed_campaigns = list(session.execute(COMPLETE_CAMPAIGNS, {"now": now}).scalars())
    campaigns = _campaigns_in_window(session, now)
    if not campaigns:
        return result
    room = settings.dispatch_max_in_flight - session.execute(IN_FLIGHT).scalar_one()
    limit = min(settings.dispatch_batch_size, room)
    if limit <= 0:
        return result
    rows = session.execute(
        CLAIM_DUE, {"campaign_ids": list(campaigns), "now": now, "limit": limit}
    ).all()
    result.claimed = len(rows)
    if not rows:
        return result

    rows = _drop_suppressed(session, rows, now, result)
    table = load_limits(session, settings)
    pool = _load_pool(session, limiter, settings)
    due = [
        _Due(r.id, r.campaign_id, r.email, r.domain, pool.candidates_for(campaigns[r.campaign_id]))
        for r in rows
    ]
    assigned, postponed = _assign(due, pool, campaigns, table, limiter, settings, now)
    _write_queued(session, assigned, now, result, settings)
    _write_postponed(session, postponed, now, result)
    _alert_campaigns_without_accounts(due, campaigns)
    return result


def _campaigns_in_window(session: Session, now: datetime) -> dict[int, Campaign]:
    running = session.execute(
        select(Campaign).where(Campaign.status == CampaignStatus.RUNNING.value)
    ).scalars()
    return {c.id: c for c in running if in_window(c.window, now)}


def _drop_suppressed(
    session: Session, rows: list[Any], now: datetime, result: DispatchResult
) -> list[Any]:
    hits = set(
        session.execute(
            SUPPRESSED_AMONG,
            {"emails": [r.email for r in rows], "domains": list({r.domain for r in rows})},
        ).scalars()
    )
    if not hits:
        return rows
    dropped = [r.id for r in rows if r.email in hits or r.domain in hits]
    session.execute(MARK_SUPPRESSED, {"ids": dropped, "now": now})
    result.suppressed = len(dropped)
    return [r for r in rows if not (r.email in hits or r.domain in hits)]


def _load_pool(session: Session, limiter: Limiter, settings: Settings) -> _Pool:
    accounts = {
        a.id: a
        for a in session.execute(
            select(Account).where(
                Account.status == AccountStatus.ACTIVE.value,
                Account.last_health_ok.is_not(False),
            )
        ).scalars()
    }
    day_windows = [account_day_window(a, settings) for a in accounts.values()]
    used = limiter.used(day_windows) if day_windows else []
    remaining = {w.key: max(w.limit - u, 0) for w, u in zip(day_windows, used, strict=True)}
    return _Pool(accounts=accounts, remaining={a: remaining[str(a)] for a in accounts})


def _assign(
    due: list[_Due],
    pool: _Pool,
    campaigns: dict[int, Campaign],
    table: LimitTable,
    limiter: Limiter,
    settings: Settings,
    now: datetime,
) -> tuple[list[tuple[_Due, int, str]], list[_Due]]:
    """Rounds of one reserve_many call: each round offers every waiting recipient its best
    untried account; refusals by account-wide scopes move it to its next account, refusals
    by scopes no account can change (system, recipient domain, campaign) postpone it."""
    assigned: list[tuple[_Due, int, str]] = []
    postponed: list[_Due] = []
    blocked: dict[tuple[Scope, str], float] = {}
    cursor = int(now.timestamp())
    waiting = due
    while waiting:
        offers: list[tuple[_Due, Account, list[Window]]] = []
        next_round: list[_Due] = []
        pool.tentative.clear()
        for item in waiting:
            cursor += 1
            shared_block = _shared_block(blocked, item)
            if shared_block is not None:
                item.wait(shared_block)
                postponed.append(item)
                continue
            account = _next_account(item, pool, cursor)
            if account is _LATER:
                next_round.append(item)
                continue
            if account is None:
                postponed.append(item)
                continue
            # Taken tentatively, so the next recipient of this round sees it and rotates on.
            pool.remaining[account.id] -= 1
            pool.tentative[account.id] += 1
            campaign = campaigns[item.campaign_id]
            windows = table.windows(
                account=account,
                recipient_domain=item.domain,
                campaign_id=campaign.id,
                campaign_daily_cap=campaign.daily_cap,
            )
            offers.append((item, account, windows))
        if not offers:
            postponed += next_round
            break
        decisions = limiter.reserve_many([w for _, _, w in offers])
        for (item, account, _), decision in zip(offers, decisions, strict=True):
            if decision.allowed:
                assigned.append((item, account.id, decision.token))
                continue
            pool.remaining[account.id] += 1
            _note_refusal(decision, item, account, pool, blocked)
            if decision.refused is not None and decision.refused.scope in (
                Scope.ACCOUNT,
                Scope.SENDING_DOMAIN,
            ):
                next_round.append(item)
            else:
                postponed.append(item)
        waiting = next_round
    # Only now, with this pass's reservations made, is "when does it free" meaningful.
    for item in postponed:
        for account_id in item.exhausted:
            item.wait(_frees_at(account_id, pool, limiter, settings))
    return assigned, postponed


def _shared_block(blocked: dict[tuple[Scope, str], float], item: _Due) -> float | None:
    for key in (
        (Scope.SYSTEM, "*"),
        (Scope.RECIPIENT_DOMAIN, item.domain),
        (Scope.CAMPAIGN, str(item.campaign_id)),
    ):
        if key in blocked:
            return blocked[key]
    return None


def _note_refusal(
    decision: Decision,
    item: _Due,
    account: Account,
    pool: _Pool,
    blocked: dict[tuple[Scope, str], float],
) -> None:
    refused = decision.refused
    until = time.time() + decision.retry_after
    item.wait(until)
    if refused is None:
        return
    if refused.scope == Scope.ACCOUNT:
        pool.blocked_until[account.id] = until
    elif refused.scope == Scope.SENDING_DOMAIN:
        for other in pool.accounts.values():
            if other.sending_domain == account.sending_domain:
                pool.blocked_until[other.id] = until
    else:
        blocked[(refused.scope, refused.key)] = until


class _Later:
    """Sentinel: every untried account is full only by this round's unanswered offers."""


_LATER: Any = _Later()


def _next_account(item: _Due, pool: _Pool, cursor: int) -> Account | None:
    """The best account this recipient has not tried yet, by the capacity left right now."""
    live = []
    later = False
    for candidate in item.candidates:
        account_id = candidate.account_id
        if account_id in item.tried:
            continue
        if account_id in pool.blocked_until:
            item.wait(pool.blocked_until[account_id])
        elif pool.remaining[account_id] > 0:
            live.append(replace(candidate, remaining_today=pool.remaining[account_id]))
        elif pool.tentative[account_id] > 0:
            later = True
        else:
            item.exhausted.add(account_id)
    if not live:
        return _LATER if later else None
    choice = order_candidates(live, cursor=cursor)[0]
    item.tried.add(choice.account_id)
    return pool.accounts[choice.account_id]


def _frees_at(account_id: int, pool: _Pool, limiter: Limiter, settings: Settings) -> float:
    if account_id not in pool.frees_at:
        window = account_day_window(pool.accounts[account_id], settings)
        pool.frees_at[account_id] = limiter.frees_at(window) or time.time() + 60
    return pool.frees_at[account_id]


def _write_queued(
    session: Session,
    assigned: list[tuple[_Due, int, str]],
    now: datetime,
    result: DispatchResult,
    settings: Settings,
) -> None:
    if not assigned:
        return
    rows = session.execute(
        MARK_QUEUED,
        {
            "ids": [item.id for item, _, _ in assigned],
            "account_ids": [account_id for _, account_id, _ in assigned],
            "tokens": [token for _, _, token in assigned],
            "now": now,
        },
    ).all()
    session.execute(
        QUEUED_EVENTS,
        {
            "ids": [r.id for r in rows],
            "campaign_ids": [r.campaign_id for r in rows],
            "account_ids": [r.account_id for r in rows],
        },
    )
    result.queued = len(rows)
    by_account: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        by_account[row.account_id].append(row.id)
    size = settings.send_group_size
    result.batches = [
        (account_id, ids[i : i + size])
        for account_id, ids in by_account.items()
        for i in range(0, len(ids), size)
    ]


def _write_postponed(
    session: Session, postponed: list[_Due], now: datetime, result: DispatchResult
) -> None:
    if not postponed:
        return
    fallback = now + NO_ACCOUNT_RETRY
    ats = [
        datetime.fromtimestamp(item.retry_at, UTC) if item.retry_at is not None else fallback
        for item in postponed
    ]
    session.execute(POSTPONE, {"ids": [item.id for item in postponed], "ats": ats, "now": now})
    result.postponed = len(postponed)


def _alert_campaigns_without_accounts(due: list[_Due], campaigns: dict[int, Campaign]) -> None:
    for campaign_id in {item.campaign_id for item in due if not item.candidates}:
        alerts.notify(
            f"campaign-no-account:{campaign_id}",
            f"Campaign {campaign_id} ({campaigns[campaign_id].name}) has recipients waiting "
            "but no active account it is allowed to use.",
        )
