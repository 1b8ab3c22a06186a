"""Recovery (beat, every minute). Redis may lose queued tasks; PostgreSQL may not lose a
recipient, and the database decides what is sent:

1. `queued` rows older than QUEUED_STALE_SECONDS whose task never ran go back to `pending`
   (their limiter reservations are released). If the lost task shows up after all, its
   claim finds the row no longer queued for it and does nothing.
2. `sending` rows older than SEND_LEASE_SECONDS become `unknown` with an event and an alert.
   They are never resent automatically: a lost outcome must not become a duplicate.
3. Accounts whose timed pause is over go back to active. (Until the health-check job lands,
   expiry alone decides; that job will gate it on a passing SMTP check.)
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from redis import Redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.settings import Settings
from rotator.limiter import Limiter
from worker.jobs import alerts
from worker.jobs.reservations import release_reservations

log = logging.getLogger(__name__)

# RETURNING sees the new row, so the old account and reservation come from the locked
# snapshot `stale` (needed to release the limiter reservation).
REQUEUE_STALE = text(
    """
    WITH stale AS (
        SELECT id, account_id, reservation FROM recipients
        WHERE status = 'queued' AND queued_at < :cutoff
        FOR UPDATE SKIP LOCKED
    ), back AS (
        UPDATE recipients AS r
        SET status = 'pending', account_id = NULL, reservation = NULL, queued_at = NULL,
            updated_at = :now
        FROM stale
        WHERE r.id = stale.id AND r.status = 'queued'
        RETURNING r.id, r.campaign_id, r.domain, stale.account_id, stale.reservation
    ), logged AS (
        INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
        SELECT 'requeued', campaign_id, id, account_id,
               '{"reason": "queued task never ran"}'::jsonb FROM back
    )
    SELECT id, campaign_id, domain, account_id, reservation FROM back
    """
)

MARK_UNKNOWN = text(
    """
    WITH lost AS (
        UPDATE recipients
        SET status = 'unknown', updated_at = :now
        WHERE status = 'sending' AND sending_since < :cutoff
        RETURNING id, campaign_id, account_id, message_id
    ), logged AS (
        INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
        SELECT 'unknown', campaign_id, id, account_id,
               jsonb_build_object('reason', 'send lease expired', 'message_id', message_id)
        FROM lost
    )
    SELECT id, campaign_id FROM lost
    """
)

RESUME_EXPIRED = text(
    """
    WITH resumed AS (
        UPDATE accounts
        SET status = 'active', paused_until = NULL, paused_reason = NULL,
            consecutive_failures = 0, updated_at = :now
        WHERE status = 'paused' AND paused_until IS NOT NULL AND paused_until <= :now
        RETURNING id
    ), logged AS (
        INSERT INTO events (type, account_id, data)
        SELECT 'account_resumed', id, '{"reason": "pause over"}'::jsonb FROM resumed
    )
    SELECT id FROM resumed
    """
)


@dataclass
class RecoveryResult:
    requeued: int = 0
    unknown: dict[int, int] = field(default_factory=dict)  # campaign id -> rows
    resumed_accounts: list[int] = field(default_factory=list)

    def any(self) -> bool:
        return bool(self.requeued or self.unknown or self.resumed_accounts)

    def log_fields(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "unknown": sum(self.unknown.values()),
            "resumed_accounts": self.resumed_accounts,
        }


def run_recovery() -> RecoveryResult:
    settings: Settings = current_app.extensions["settings"]
    redis: Redis = current_app.extensions["redis"]
    with unit_of_work() as session:
        result = recover(session, Limiter(redis), settings, now=datetime.now(UTC))
    for campaign_id, count in result.unknown.items():
        alerts.notify(
            f"unknown:{campaign_id}",
            f"Campaign {campaign_id}: {count} send(s) lost their outcome (worker died "
            "mid-send?). They are marked unknown and will not be resent automatically.",
        )
    return result


def recover(
    session: Session, limiter: Limiter, settings: Settings, *, now: datetime
) -> RecoveryResult:
    result = RecoveryResult()
    requeued = session.execute(
        REQUEUE_STALE,
        {"now": now, "cutoff": now - timedelta(seconds=settings.queued_stale_seconds)},
    ).all()
    result.requeued = len(requeued)
    release_reservations(session, limiter, settings, requeued)
    lost = session.execute(
        MARK_UNKNOWN,
        {"now": now, "cutoff": now - timedelta(seconds=settings.send_lease_seconds)},
    ).all()
    result.unknown = dict(Counter(row.campaign_id for row in lost))
    result.resumed_accounts = list(session.execute(RESUME_EXPIRED, {"now": now}).scalars())
    return result
