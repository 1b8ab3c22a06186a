"""Rebuilding the limiter's windows from PostgreSQL when Redis has lost them.

Redis may lose what it holds (a restart without persistence, a flush, a failover to an
empty replica); PostgreSQL decides what was sent. The dispatcher's limiter refuses to
reserve while the windows' epoch key is missing (rotator.limiter.WindowsLost); the first
dispatcher pass to see that takes a lock, reads every send of the last 24 hours
(app.services.sends), maps each to the windows it counts in (the same LimitTable the
dispatcher reserves with), and writes them with `Limiter.restore`, which sets the epoch
last. Until then no reservation is granted, so nothing is sent past a limit meanwhile."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, Campaign
from app.services.limits import LimitTable, load_limits
from app.services.sends import DAY, SENDS_SINCE
from app.settings import Settings
from rotator.limiter import Limiter, WindowId
from worker.jobs import alerts
from worker.jobs.locks import RedisLock

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 300
_FETCH = 20_000

Plan = list[tuple[WindowId, float]]  # a send's windows and their spans


@dataclass(frozen=True)
class Rebuilt:
    sends: int
    members: int
    windows: int
    seconds: float


def ensure_windows(redis: Redis, limiter: Limiter, settings: Settings, now: datetime) -> bool:
    """Rebuilds the windows unless another process is doing it; True when they are built
    now (by this call or another), False when the caller should hold its sends."""
    lock = RedisLock(redis, "limiter-rebuild", ttl_seconds=LOCK_TTL_SECONDS)
    if not lock.acquire():
        return False
    try:
        if limiter.is_built():  # another process finished while we waited for the lock
            return True
        with unit_of_work() as session:
            rebuilt = rebuild_windows(session, limiter, settings, now=now)
    finally:
        lock.release()
    fields = {
        "sends": rebuilt.sends,
        "members": rebuilt.members,
        "windows": rebuilt.windows,
        "seconds": round(rebuilt.seconds, 3),
    }
    log.warning("limiter.rebuilt", extra=fields)
    alerts.notify(
        "limiter-rebuilt",
        f"Redis had lost the rate limiter's windows; rebuilt them from the database "
        f"({rebuilt.sends} sends of the last 24 h in {rebuilt.seconds:.1f} s). Sending went on "
        "within every limit.",
    )
    return True


def rebuild_windows(
    session: Session, limiter: Limiter, settings: Settings, *, now: datetime
) -> Rebuilt:
    started = time.monotonic()
    table = load_limits(session, settings)
    accounts = {a.id: a for a in session.execute(select(Account)).scalars()}
    caps: dict[int, int | None] = dict(
        session.execute(
            select(Campaign.id, Campaign.daily_cap).where(Campaign.daily_cap.is_not(None))
        ).all()  # type: ignore[arg-type]
    )
    now_ts = now.timestamp()
    plans: dict[tuple[int, int, str], Plan] = {}
    windows: dict[WindowId, list[tuple[str, float]]] = defaultdict(list)
    sends = 0
    rows = session.execute(
        SENDS_SINCE.execution_options(stream_results=True, yield_per=_FETCH),
        {"since": now - DAY, "now": now},
    )
    for member, at, account_id, campaign_id, domain in rows:
        account = accounts.get(account_id)
        if account is None:  # deleted since: its own windows went with it
            continue
        plan_key = (account_id, campaign_id, domain)
        plan = plans.get(plan_key)
        if plan is None:
            plan = plans[plan_key] = _plan(table, account, domain, campaign_id, caps)
        sends += 1
        entry = (member, at.timestamp())
        age = now_ts - entry[1]
        for window_id, span in plan:
            if age < span:
                windows[window_id].append(entry)
    members = limiter.restore(windows, epoch=uuid.uuid4().hex)
    return Rebuilt(sends, members, len(windows), time.monotonic() - started)


def _plan(
    table: LimitTable,
    account: Account,
    domain: str,
    campaign_id: int,
    caps: dict[int, int | None],
) -> Plan:
    return [
        ((w.scope, w.key, w.seconds), float(w.seconds))
        for w in table.windows(
            account=account,
            recipient_domain=domain,
            campaign_id=campaign_id,
            campaign_daily_cap=caps.get(campaign_id),
        )
    ]
