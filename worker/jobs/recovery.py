"""Recovery (beat, every RECOVERY_INTERVAL_SECONDS). Redis may lose queued tasks; PostgreSQL
may not lose a recipient, and the database decides what is sent. Every claim records the
process holding it (`claimed_by`) and every such process keeps a heartbeat
(worker/jobs/heartbeat.py), so a row is judged by whether its holder lives, not by its age:

1. `queued` rows go back to `pending` (their limiter reservations released) when their
   holder is dead, or, with no holder (the task never started: it is still in the broker or
   the broker lost it), when older than QUEUED_STALE_SECONDS, or at once when Redis, being
   the broker, was found to have lost its data (a restart, flush or failover). If the task
   runs after all, its claim finds the row no longer queued for it and does nothing.
2. `sending` rows become `unknown` with an event and an alert when their holder is dead.
   A row whose holder lives is never declared unknown, however long it takes; one older
   than SEND_LEASE_SECONDS raises an alert instead. Rows with no holder (written by a version
   before holders were recorded) fall back to SEND_LEASE_SECONDS. `unknown` rows are never
   resent automatically: a lost outcome must not become a duplicate.
Accounts whose timed pause is over are not recovery's: they return to rotation only when
their SMTP health check passes (worker.jobs.health, every RESUME_CHECK_INTERVAL_SECONDS).

With the defaults (heartbeat every 5 s, TTL 15 s, a pass every 15 s, a missing heartbeat
confirmed on a second pass) a dead holder's rows are recovered 30 to 45 s after its death.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.services.clients import clients_of_campaigns
from app.services.limits import make_limiter
from app.settings import Settings
from rotator.limiter import Limiter
from worker.jobs import alerts
from worker.jobs.heartbeat import Liveness
from worker.jobs.reservations import release_reservations

log = logging.getLogger(__name__)

HOLDERS = text(
    """
    SELECT DISTINCT claimed_by FROM recipients
    WHERE status IN ('queued', 'sending') AND claimed_by IS NOT NULL
    """
)

# RETURNING sees the new row, so the old account, reservation and holder come from the locked
# snapshot `stale` (the reservation is needed to release the limiter). A task that marks a
# row as held while this runs wins: FOR UPDATE re-checks the condition on the newest row.
REQUEUE_STALE = text(
    """
    WITH stale AS (
        SELECT id, account_id, reservation, claimed_by FROM recipients
        WHERE status = 'queued'
          AND ((claimed_by IS NULL AND coalesce(slot_at, queued_at) < :cutoff)
               OR claimed_by = ANY(CAST(:dead AS text[])))
        FOR UPDATE SKIP LOCKED
    ), back AS (
        UPDATE recipients AS r
        SET status = 'pending', account_id = NULL, reservation = NULL, queued_at = NULL,
            slot_at = NULL,
            claimed_by = NULL, updated_at = :now
        FROM stale
        WHERE r.id = stale.id AND r.status = 'queued'
        RETURNING r.id, r.campaign_id, r.domain, stale.account_id, stale.reservation,
                  stale.claimed_by
    ), logged AS (
        INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
        SELECT 'requeued', campaign_id, id, account_id,
               CASE WHEN claimed_by IS NULL
                    THEN '{"reason": "queued task never ran"}'::jsonb
                    ELSE jsonb_build_object('reason', 'holder gone', 'holder', claimed_by)
               END
        FROM back
    )
    SELECT id, campaign_id, domain, account_id, reservation FROM back
    """
)

MARK_UNKNOWN = text(
    """
    WITH lost AS (
        UPDATE recipients
        SET status = 'unknown', updated_at = :now
        WHERE status = 'sending'
          AND ((claimed_by IS NULL AND sending_since < :cutoff)
               OR claimed_by = ANY(CAST(:dead AS text[])))
        RETURNING id, campaign_id, account_id, message_id, claimed_by
    ), logged AS (
        INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
        SELECT 'unknown', campaign_id, id, account_id,
               CASE WHEN claimed_by IS NULL
                    THEN jsonb_build_object('reason', 'send lease expired',
                                            'message_id', message_id)
                    ELSE jsonb_build_object('reason', 'holder gone', 'holder', claimed_by,
                                            'message_id', message_id)
               END
        FROM lost
    )
    SELECT id, campaign_id FROM lost
    """
)

# Held by a live process for longer than any SMTP timeout allows: worth a look, never a
# reason to call the send lost.
OVERDUE = text(
    """
    SELECT count(*) FROM recipients
    WHERE status = 'sending' AND claimed_by IS NOT NULL AND sending_since < :cutoff
      AND NOT claimed_by = ANY(CAST(:dead AS text[]))
    """
)

@dataclass
class RecoveryResult:
    requeued: int = 0
    unknown: dict[int, int] = field(default_factory=dict)  # campaign id -> rows
    dead_holders: list[str] = field(default_factory=list)
    overdue: int = 0  # sending rows of live holders older than the lease (left alone)
    broker_lost: bool = False  # Redis, the broker, lost its data: unstarted tasks are gone

    def any(self) -> bool:
        return any((self.requeued, self.unknown, self.dead_holders, self.overdue))

    def log_fields(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "unknown": sum(self.unknown.values()),
            "dead_holders": self.dead_holders,
            "overdue": self.overdue,
            "broker_lost": self.broker_lost,
        }


def run_recovery() -> RecoveryResult:
    settings: Settings = current_app.extensions["settings"]
    redis: Redis = current_app.extensions["redis"]
    with unit_of_work() as session:
        result = recover(
            session,
            make_limiter(redis, settings),
            Liveness(redis, settings),
            settings,
            now=datetime.now(UTC),
        )
        clients = clients_of_campaigns(session, list(result.unknown))
    for campaign_id, count in result.unknown.items():
        alerts.notify(
            f"unknown:{campaign_id}",
            f"Campaign {campaign_id}: {count} send(s) lost their outcome (worker died "
            "mid-send?). They are marked unknown and will not be resent automatically.",
            client_id=clients.get(campaign_id),
        )
    if result.overdue:
        alerts.notify(
            "send-overdue",
            f"{result.overdue} send(s) have been in progress for longer than "
            f"SEND_LEASE_SECONDS ({settings.send_lease_seconds} s) in live worker processes. "
            "They are left alone (a live send is never declared lost); check the SMTP "
            "servers of their accounts and the workers.",
        )
    return result


def recover(
    session: Session, limiter: Limiter, liveness: Liveness, settings: Settings, *, now: datetime
) -> RecoveryResult:
    result = RecoveryResult()
    holders = list(session.execute(HOLDERS).scalars())
    dead = sorted(liveness.dead(holders))
    result.dead_holders = dead
    stale = now - timedelta(seconds=settings.queued_stale_seconds)
    if liveness.redis_renewed and broker_is_redis(settings):
        # Redis lost its data and it was the broker: the task of every queued row no
        # process had started on is gone. They go back now, not after QUEUED_STALE_SECONDS.
        # A task that survives after all (prefetched by a worker) finds its row no longer
        # queued for it, or claims it once: the claim decides, never twice.
        stale = now
        result.broker_lost = True
    requeued = session.execute(REQUEUE_STALE, {"now": now, "cutoff": stale, "dead": dead}).all()
    result.requeued = len(requeued)
    release_reservations(session, limiter, settings, requeued)
    lease_cutoff = now - timedelta(seconds=settings.send_lease_seconds)
    lost = session.execute(MARK_UNKNOWN, {"now": now, "cutoff": lease_cutoff, "dead": dead}).all()
    result.unknown = dict(Counter(row.campaign_id for row in lost))
    result.overdue = session.execute(OVERDUE, {"cutoff": lease_cutoff, "dead": dead}).scalar_one()
    return result


def broker_is_redis(settings: Settings) -> bool:
    """Whether the Celery broker is the Redis server of REDIS_URL (its default)."""
    if settings.celery_broker_url is None:
        return True
    broker, store = urlsplit(settings.celery_broker_url), urlsplit(settings.redis_url)
    if not broker.scheme.startswith("redis"):
        return False
    return (broker.hostname, broker.port or 6379) == (store.hostname, store.port or 6379)
