"""Rebuilding the limiter's windows from PostgreSQL when Redis has lost them.

Redis may lose what it holds (a restart without persistence, a flush, a failover to an
empty replica); PostgreSQL decides what was sent. The dispatcher's limiter refuses to
reserve while the windows' epoch key is missing (rotator.limiter.WindowsLost); the first
dispatcher pass to see that takes a lock, reads every send of the last 24 hours
(app.services.sends), maps each to the windows it counts in (the same LimitTable the
dispatcher reserves with), and writes them with `Limiter.restore`, which sets the epoch
last. Until then no reservation is granted, so nothing is sent past a limit meanwhile."""

from __future__ import annotations

import gc
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, Campaign
from app.services.limits import load_limits
from app.services.sends import DAY, SENDS_SINCE
from app.settings import Settings
from rotator.limiter import Limiter, Window, WindowId
from worker.jobs import alerts
from worker.jobs.locks import RedisLock

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 900
_FETCH = 20_000

# One dimension's windows: each one's member list and its span in microseconds.
Slots = tuple[tuple[list[str], int], ...]
_US = 1_000_000
# SENDS_SINCE with each send's limiter entry ("<microseconds> <member>") built once.
ENTRIES = text(
    "SELECT us || ' ' || member AS entry, us, account_id, campaign_id, domain FROM ("
    " SELECT s.*, (extract(epoch FROM s.at) * 1000000)::bigint AS us"
    f" FROM ({SENDS_SINCE.text}) AS s) AS t"
)


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
    """Each send's windows are resolved per dimension (an account's own windows, a
    client's recipient domain, a campaign's cap: each list found once, not once per
    combination), its entry built once in SQL, and the cyclic GC paused while millions of
    objects that hold no cycle are made."""
    started = time.monotonic()
    enabled = gc.isenabled()
    gc.disable()
    try:
        # A cursor is planned for its first 10 % of rows (a merge join over two index
        # scans); all of them are read.
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1"))
        windows, sends = _map_sends(session, limiter, settings, now)
        members = limiter.restore_entries(windows, epoch=uuid.uuid4().hex)
    finally:
        if enabled:
            gc.enable()
    return Rebuilt(sends, members, sum(1 for m in windows.values() if m),
                   time.monotonic() - started)  # fmt: skip


def _map_sends(
    session: Session, limiter: Limiter, settings: Settings, now: datetime
) -> tuple[dict[WindowId, list[str]], int]:
    table = load_limits(session, settings)
    windows: dict[WindowId, list[str]] = {}

    def slots(found: list[Window]) -> Slots:
        return tuple(
            (windows.setdefault((w.scope, w.key, w.seconds), []), limiter.span_us(w))
            for w in found
        )

    accounts = {
        a.id: (a.client_id, slots(table.account_windows(a)))
        for a in session.execute(select(Account)).scalars()
    }
    campaigns = {
        campaign_id: slots(table.campaign_windows(campaign_id, cap))
        for campaign_id, cap in session.execute(
            select(Campaign.id, Campaign.daily_cap).where(Campaign.daily_cap.is_not(None))
        )
    }
    domains: dict[tuple[int, str], Slots] = {}
    none: Slots = ()
    now_us = round(now.timestamp() * _US)
    sends = 0
    rows = session.execute(
        ENTRIES.execution_options(stream_results=True, yield_per=_FETCH),
        {"since": now - DAY, "now": now},
    )
    for entry, at_us, account_id, campaign_id, domain in rows:
        held = accounts.get(account_id)
        if held is None:  # deleted since: its own windows went with it
            continue
        client_id, own = held
        by_domain = domains.get((client_id, domain))
        if by_domain is None:
            by_domain = domains[(client_id, domain)] = slots(
                table.recipient_domain_windows(client_id, domain)
            )
        sends += 1
        age = now_us - at_us
        for part in (own, by_domain, campaigns.get(campaign_id, none)):
            for members, span in part:
                if age < span:
                    members.append(entry)
    return windows, sends
