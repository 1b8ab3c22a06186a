"""Giving a batch's rows back: to the dispatcher (queued rows, their reservations
released), to recovery (rows this process held), and after a database outage, once the
database answers again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.services.limits import make_limiter
from app.settings import Settings
from worker.jobs.reservations import release_reservations
from worker.jobs.send_sql import HAND_BACK_QUEUED, RELEASE_HELD

log = logging.getLogger(__name__)

# Retrying the database after it went away mid-batch: first wait, and the longest.
OUTAGE_FIRST_DELAY = 0.5
OUTAGE_MAX_DELAY = 10.0
# Retries of a send task that cannot reach the database at all: 1, 2, 4 ... 30 s apart,
# for about as long as QUEUED_STALE_SECONDS' default; then recovery has its rows.
DATABASE_RETRIES = 12
DATABASE_RETRY_MAX_SECONDS = 30


def hand_back(session: Session, settings: Settings, account_id: int, ids: list[int]) -> int:
    if not ids:
        return 0
    rows = session.execute(
        HAND_BACK_QUEUED, {"ids": ids, "account_id": account_id, "now": datetime.now(UTC)}
    ).all()
    limiter = make_limiter(current_app.extensions["redis"], settings)
    try:
        release_reservations(session, limiter, settings, rows)
    except (RedisError, OSError) as exc:
        # Redis is away: the places stay counted until their windows pass (never too few
        # counted), and the rows go back all the same; PostgreSQL decides what is sent.
        log.warning("send.release_failed", extra={"count": len(rows), "error": str(exc)})
    return len(rows)


def release_held(session: Session, holder: str, ids: list[int]) -> None:
    try:
        session.execute(RELEASE_HELD, {"ids": ids, "holder": holder})
        session.commit()
    except Exception:  # the database is what failed: the original error is the news
        session.rollback()
        log.warning("send.release_held_failed", extra={"holder": holder}, exc_info=True)


def after_outage(
    session: Session,
    settings: Settings,
    settle: Callable[[], object],
    account_id: int,
    recipient_ids: list[int],
) -> int:
    """Retries, with backoff for up to SEND_LEASE_SECONDS (the heartbeat keeps this
    process's rows its own meanwhile), `settle` (the outcomes the servers already gave, the
    rows claimed but never sent back to queued) and handing the batch's queued rows back,
    in one transaction. Past the lease the error propagates and the rows are left to
    recovery."""
    deadline = time.monotonic() + settings.send_lease_seconds
    delay = OUTAGE_FIRST_DELAY
    while True:
        try:
            session.rollback()
            settle()
            handed = hand_back(session, settings, account_id, recipient_ids)
            session.commit()
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, OUTAGE_MAX_DELAY)
            continue
        log.warning(
            "send.database_back",
            extra={"account_id": account_id, "handed_back": handed},
        )
        return handed


def database_retry(account_id: int, retries: int) -> dict[str, int]:
    """Celery retry options for a send task whose database was unreachable."""
    countdown = min(2**retries, DATABASE_RETRY_MAX_SECONDS)
    log.warning(
        "send.database_unreachable_retry",
        extra={"account_id": account_id, "retries": retries, "countdown": countdown},
    )
    return {"countdown": countdown, "max_retries": DATABASE_RETRIES}
