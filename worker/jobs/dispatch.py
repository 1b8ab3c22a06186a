"""The dispatcher: turns due recipients into queued sends, inside every rate limit.

One dispatcher runs at a time cluster-wide (a Redis lock). Each pass:

1. claims due `pending`/`deferred` recipients of running campaigns of active clients that
   are inside their sending window, with `SELECT ... FOR UPDATE SKIP LOCKED LIMIT n` per
   campaign: each client an equal share of the batch, each of its campaigns a share of
   that weighted by its `priority` (rotator.fairness), so a big campaign never starves a
   small one;
2. drops suppressed ones (status `suppressed`, an event: a global suppression, or an
   unsubscribe from the campaign's own client), and postpones those whose domain asked
   the client's senders to slow down (worker.jobs.backoffs) until its back-off ends;
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from celery import current_app as current_celery
from flask import current_app
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.metrics.counters import count_limiter_refusals
from app.models import Campaign, CampaignStatus, Client, ClientStatus
from app.services.limits import load_limits, make_limiter
from app.services.windows import in_window
from app.settings import Settings
from rotator.fairness import interleave, quotas
from rotator.limiter import Limiter, WindowsLost
from worker.celery_app import SEND_QUEUE
from worker.jobs import alerts
from worker.jobs.assignment import Assigned, Due, assign, load_pool
from worker.jobs.backoffs import active_backoffs
from worker.jobs.dispatch_sql import (
    CLAIM_DUE,
    COMPLETE_CAMPAIGNS,
    IN_FLIGHT,
    LOCK_RUNNING_CAMPAIGNS,
    MARK_QUEUED,
    MARK_SUPPRESSED,
    POSTPONE,
    QUEUED_EVENTS,
    SUPPRESSED_AMONG,
)
from worker.jobs.locks import RedisLock
from worker.jobs.windows_rebuild import ensure_windows

log = logging.getLogger(__name__)

# Rounds of the fair claim: the later ones hand out what campaigns with few due rows left.
CLAIM_ROUNDS = 3
# When a campaign has no usable account at all, look again after this long.
NO_ACCOUNT_RETRY = timedelta(minutes=1)
# An account's rows placed within this long of the first of them go in one send task (the
# send path waits for each row's moment in between); rows placed further apart, their own.
SEND_GROUP_SPREAD = 1.0
# A batch due sooner than this is published at once rather than with an ETA.
ETA_THRESHOLD = 0.05


class Batch(NamedTuple):
    """One send task: an account's rows placed close together, sent from `at` on."""

    account_id: int
    ids: list[int]
    at: float | None = None


@dataclass
class DispatchResult:
    skipped: bool = False
    claimed: int = 0
    queued: int = 0
    suppressed: int = 0
    postponed: int = 0
    backed_off: int = 0
    # The limiter's windows were rebuilt from the database in this pass; or they were
    # lost and another process is rebuilding them, so this pass sent nothing (held).
    rebuilt: bool = False
    held: bool = False
    completed_campaigns: list[int] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)

    def add(self, other: DispatchResult) -> None:
        self.claimed += other.claimed
        self.queued += other.queued
        self.suppressed += other.suppressed
        self.postponed += other.postponed
        self.backed_off += other.backed_off
        self.completed_campaigns += other.completed_campaigns
        self.batches += other.batches

    def log_fields(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "queued": self.queued,
            "suppressed": self.suppressed,
            "postponed": self.postponed,
            "backed_off": self.backed_off,
            "rebuilt": self.rebuilt,
            "held": self.held,
            "completed": self.completed_campaigns,
        }


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
    and its tasks enqueued before the next one is claimed. When Redis has lost the limiter's
    windows, they are rebuilt from the database first (worker.jobs.windows_rebuild); a
    batch that found them lost is rolled back, so nothing was claimed or reserved."""
    limiter = make_limiter(redis, settings, require_epoch=True)
    total = DispatchResult()
    deadline = time.monotonic() + budget_seconds
    while True:
        try:
            with unit_of_work() as session:
                result = dispatch_batch(session, limiter, settings, now=datetime.now(UTC))
        except WindowsLost:
            total.rebuilt = ensure_windows(redis, limiter, settings, datetime.now(UTC))
            if not total.rebuilt or time.monotonic() >= deadline:
                total.held = not total.rebuilt
                return total
            continue
        enqueue(result.batches)
        total.add(result)
        # Rows postponed for a domain back-off leave the scan: the next batch finds others.
        progressed = result.queued > 0 or result.backed_off > 0
        if not progressed or time.monotonic() >= deadline:
            return total


def enqueue(batches: list[Batch]) -> None:
    """After the commit only: a task must never find its rows not yet visible. A failure here
    leaves the rows `queued`; recovery returns them to `pending`. A batch placed ahead is
    published with that moment as its ETA: the worker holds it without a process until then
    (the send path still waits for each row's own moment, at most SEND_GROUP_SPREAD)."""
    now = time.time()
    for batch in batches:
        eta = None
        if batch.at is not None and batch.at > now + ETA_THRESHOLD:
            eta = datetime.fromtimestamp(batch.at, UTC)
        current_celery.send_task(
            "sendfleet.send_batch", args=[batch.account_id, batch.ids], queue=SEND_QUEUE, eta=eta
        )


def dispatch_batch(
    session: Session, limiter: Limiter, settings: Settings, *, now: datetime
) -> DispatchResult:
    result = DispatchResult()
    result.completed_campaigns = _complete_finished_campaigns(session, now)
    campaigns = _campaigns_in_window(session, now)
    if not campaigns:
        return result
    in_flight = session.execute(IN_FLIGHT).scalar_one()
    room = settings.dispatch_max_in_flight - in_flight
    limit = min(settings.dispatch_batch_size, room)
    if limit <= 0 or (in_flight and room < min_top_up(settings)):
        return result
    # Rows due before the next tick, or within the horizon sends are placed ahead in, are
    # claimed now: one parked until a shared limit frees must compete with the rows that
    # were due all along, or those would be placed at the moment room returns and take it
    # all. An early row is placed no sooner than its own next_attempt_at (or refused and
    # parked again).
    ahead = max(settings.dispatch_interval_seconds, settings.dispatch_horizon_seconds)
    due_by = now + timedelta(seconds=ahead)
    rows = _claim_fairly(session, campaigns, limit, due_by)
    result.claimed = len(rows)
    if not rows:
        return result

    rows = _drop_suppressed(session, rows, campaigns, now, result)
    rows = _hold_backed_off(session, rows, campaigns, now, result)
    if not rows:
        return result
    table = load_limits(session, settings)
    pool = load_pool(session, limiter, settings)
    # One candidate list per campaign, shared by its rows (not one per row: 1,200 accounts).
    candidates = {cid: pool.candidates_for(campaigns[cid]) for cid in {r.campaign_id for r in rows}}
    due = [
        Due(
            r.id,
            r.campaign_id,
            r.email,
            r.domain,
            candidates[r.campaign_id],
            client_id=campaigns[r.campaign_id].client_id,
            not_before=r.next_attempt_at.timestamp() if r.next_attempt_at else None,
        )
        for r in rows
    ]
    assigned, postponed = assign(due, pool, campaigns, table, limiter, settings, now)
    count_limiter_refusals(limiter.redis, pool.refusals)
    _write_queued(session, assigned, now, result, settings)
    _write_postponed(session, postponed, now, result)
    _alert_campaigns_without_accounts(due, campaigns)
    return result


def min_top_up(settings: Settings) -> int:
    """While sends are in flight, the fewest rows worth claiming. Topping the queue up by
    whatever room the last few sends freed, pass after pass, gave each send task a handful
    of rows (5-10 with 2 accounts at full speed): the task's own cost (loading the account,
    its limits, marking the rows held) then came every few messages instead of once per
    SEND_GROUP_SIZE. The workers have the in-flight rows to send meanwhile."""
    return max(1, min(settings.dispatch_batch_size, settings.dispatch_max_in_flight) // 4)


def _complete_finished_campaigns(session: Session, now: datetime) -> list[int]:
    """Committed at once: the campaign rows are locked (against an import adding
    recipients meanwhile, which holds its campaign's row: skipped) for two short statements,
    never for the rest of the pass, so a pause or a resume never waits for a dispatcher."""
    locked = list(session.execute(LOCK_RUNNING_CAMPAIGNS).scalars())
    if not locked:
        session.commit()
        return []
    done = list(session.execute(COMPLETE_CAMPAIGNS, {"ids": locked, "now": now}).scalars())
    session.commit()
    return done


def _campaigns_in_window(session: Session, now: datetime) -> dict[int, Campaign]:
    """Running campaigns of active clients, inside their sending window."""
    running = session.execute(
        select(Campaign)
        .join(Client, Client.id == Campaign.client_id)
        .where(
            Campaign.status == CampaignStatus.RUNNING.value,
            Client.status == ClientStatus.ACTIVE.value,
        )
    ).scalars()
    return {c.id: c for c in running if in_window(c.window, now)}


def _claim_fairly(
    session: Session, campaigns: dict[int, Campaign], limit: int, due_by: datetime
) -> list[Any]:
    """Due rows, each client an equal share of `limit` and each of its campaigns an equal
    share of that, ordered round-robin the same way (rotator.fairness). What a campaign
    with fewer due rows leaves of its share goes, in a further round, to the campaigns that
    used all of theirs."""
    waiting = dict(campaigns)
    rows: list[Any] = []
    for _ in range(CLAIM_ROUNDS):
        by_client: dict[int, list[int]] = defaultdict(list)
        for campaign in waiting.values():
            by_client[campaign.client_id].append(campaign.id)
        shares = quotas(
            by_client,
            limit - len(rows),
            rotation=int(due_by.timestamp()),
            priority={cid: c.priority for cid, c in waiting.items()},
        )
        if not shares:
            break
        claimed = session.execute(
            CLAIM_DUE,
            {
                "campaign_ids": list(shares),
                "quotas": list(shares.values()),
                "due_by": due_by,
                "taken": [r.id for r in rows],
            },
        ).all()
        rows += claimed
        got = Counter(r.campaign_id for r in claimed)
        # Only a campaign that filled its share may have more due rows.
        waiting = {cid: waiting[cid] for cid, quota in shares.items() if got[cid] >= quota}
    return interleave(
        rows,
        client_of=lambda r: campaigns[r.campaign_id].client_id,
        campaign_of=lambda r: r.campaign_id,
        priority=lambda r: campaigns[r.campaign_id].priority,
    )


def _drop_suppressed(
    session: Session,
    rows: list[Any],
    campaigns: dict[int, Campaign],
    now: datetime,
    result: DispatchResult,
) -> list[Any]:
    """A global suppression stops every client's send; an unsubscribe, only its client's."""
    hits: dict[str, set[int | None]] = defaultdict(set)
    for client_id, value in session.execute(
        SUPPRESSED_AMONG,
        {"emails": [r.email for r in rows], "domains": list({r.domain for r in rows})},
    ):
        hits[value].add(client_id)
    if not hits:
        return rows

    def suppressed(row: Any) -> bool:
        owners = hits.get(row.email, set()) | hits.get(row.domain, set())
        return None in owners or campaigns[row.campaign_id].client_id in owners

    dropped = [r.id for r in rows if suppressed(r)]
    if dropped:
        session.execute(MARK_SUPPRESSED, {"ids": dropped, "now": now})
    result.suppressed = len(dropped)
    return [r for r in rows if not suppressed(r)]


def _hold_backed_off(
    session: Session,
    rows: list[Any],
    campaigns: dict[int, Campaign],
    now: datetime,
    result: DispatchResult,
) -> list[Any]:
    """Rows of a domain under a back-off of their client wait until it ends
    (next_attempt_at = until), so they are neither sent nor rescanned before then."""
    until = active_backoffs(session, list({r.domain for r in rows}), now)
    if not until:
        return rows

    def key(row: Any) -> tuple[int, str]:
        return campaigns[row.campaign_id].client_id, row.domain

    held = [r for r in rows if key(r) in until]
    if not held:
        return rows
    session.execute(
        POSTPONE,
        {"ids": [r.id for r in held], "ats": [until[key(r)] for r in held], "now": now},
    )
    result.backed_off = len(held)
    return [r for r in rows if key(r) not in until]


def _write_queued(
    session: Session,
    assigned: list[Assigned],
    now: datetime,
    result: DispatchResult,
    settings: Settings,
) -> None:
    if not assigned:
        return
    rows = session.execute(
        MARK_QUEUED,
        {
            "ids": [a.due.id for a in assigned],
            "account_ids": [a.account_id for a in assigned],
            "tokens": [a.token for a in assigned],
            "slots": [datetime.fromtimestamp(a.at, UTC) for a in assigned],
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
    result.batches = group_sends(rows, settings.send_group_size)


def group_sends(rows: list[Any], size: int) -> list[Batch]:
    """Per account in the order of their moments: up to `size` rows placed within
    SEND_GROUP_SPREAD of the group's first."""
    by_account: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_account[row.account_id].append(row)
    batches: list[Batch] = []
    for account_id, own in by_account.items():
        own.sort(key=lambda r: r.slot_at)
        group: list[Any] = []
        for row in own:
            if group and (
                len(group) >= size
                or (row.slot_at - group[0].slot_at).total_seconds() > SEND_GROUP_SPREAD
            ):
                batches.append(_batch(account_id, group))
                group = []
            group.append(row)
        if group:
            batches.append(_batch(account_id, group))
    return batches


def _batch(account_id: int, rows: list[Any]) -> Batch:
    return Batch(account_id, [r.id for r in rows], rows[0].slot_at.timestamp())


def _write_postponed(
    session: Session, postponed: list[Due], now: datetime, result: DispatchResult
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


def _alert_campaigns_without_accounts(due: list[Due], campaigns: dict[int, Campaign]) -> None:
    for campaign_id in {item.campaign_id for item in due if not item.candidates}:
        alerts.notify(
            f"campaign-no-account:{campaign_id}",
            f"Campaign {campaign_id} ({campaigns[campaign_id].name}) has recipients waiting "
            "but no active account of its client it is allowed to use.",
            client_id=campaigns[campaign_id].client_id,
        )
