"""Each queued send goes at the moment the dispatcher placed it at (recipients.slot_at), as
the receiving server must see it: never before, and not much after.

- Before its moment: the send waits, at most about SEND_GROUP_SPREAD (the dispatcher
  publishes each group with its first moment as ETA). A task that arrives far too early
  (redelivered, or run by hand) is published again with that ETA instead of holding the
  process.
- Moments are on Redis's clock, the limiter's (worker.jobs.redis_clock), never the host's:
  a worker whose clock is ahead still sends at each moment, not before it, and a task it
  publishes again gets an ETA on its own clock. Celery keeps the dispatcher's ETAs by the
  host's clock, so a worker whose clock is behind starts each task that much late: within
  the tolerance below it sends late by that much, past it each send is late, and is
  treated as late whatever the cause (a late send must never crowd a window).
- Later than SEND_SLOT_TOLERANCE_SECONDS after its moment (the queue backed up, the worker
  restarted, the sends before it were slow): its place in the windows is stale, and
  sending now could put more in a minute than the limit. It moves its reservation to now
  if every window allows a send now (Limiter.move) and goes; otherwise it goes back to the
  dispatcher with its reservation released, to be placed again after the sends that kept
  their places.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from celery import current_app as current_celery
from flask import current_app
from sqlalchemy.orm import Session

from app.settings import Settings
from worker.celery_app import SEND_QUEUE
from worker.jobs.redis_clock import RedisClock, clock_of
from worker.jobs.send_sql import MARK_HELD

log = logging.getLogger(__name__)

# Longest wait inside a task for a row's moment: the dispatcher's group spread plus margin.
MAX_WAIT_SECONDS = 2.0


class Timing(Enum):
    NOW = "now"
    LATE = "late"
    EARLY = "early"


@dataclass(frozen=True)
class Held:
    at: float | None
    reservation: str | None
    domain: str
    campaign_id: int


@dataclass
class Slots:
    """The batch's moments, read when the batch's rows are marked as held by this process."""

    rows: dict[int, Held]
    tolerance: float
    clock: RedisClock | None = None  # None: this host's clock (nothing held to wait for)

    @classmethod
    def hold(
        cls,
        session: Session,
        settings: Settings,
        account_id: int,
        recipient_ids: list[int],
        holder: str,
    ) -> Slots:
        rows = session.execute(
            MARK_HELD, {"ids": recipient_ids, "account_id": account_id, "holder": holder}
        ).all()
        held = {
            r.id: Held(
                r.slot_at.timestamp() if r.slot_at is not None else None,
                r.reservation,
                r.domain,
                r.campaign_id,
            )
            for r in rows
        }
        return cls(held, settings.send_slot_tolerance_seconds, clock_of(current_app.extensions))

    def _now(self) -> float:
        return time.time() if self.clock is None else self.clock.now()

    def timing(self, recipient_id: int) -> Timing:
        """Waits for the row's moment when it is near; says when it is past or far off."""
        held = self.rows.get(recipient_id)
        at = None if held is None else held.at
        if at is None:
            return Timing.NOW
        delay = at - self._now()
        if delay > MAX_WAIT_SECONDS:
            return Timing.EARLY
        if delay > 0:
            time.sleep(delay)
            return Timing.NOW
        return Timing.LATE if -delay > self.tolerance else Timing.NOW

    def delay(self, recipient_id: int) -> float:
        """Seconds until the row's moment (0 or less: it has come)."""
        held = self.rows.get(recipient_id)
        return 0.0 if held is None or held.at is None else held.at - self._now()

    def publish_later(self, account_id: int, recipient_ids: list[int]) -> None:
        """The rows stay queued and held by no one; a task at their first moment sends them."""
        now = self._now()
        at = min((h.at or now) if (h := self.rows.get(i)) else now for i in recipient_ids)
        # The ETA is kept by the worker that takes the task, by its own clock.
        local = at if self.clock is None else self.clock.to_local(at)
        current_celery.send_task(
            "sendfleet.send_batch",
            args=[account_id, recipient_ids],
            queue=SEND_QUEUE,
            eta=datetime.fromtimestamp(local, UTC),
        )
        log.info("send.republished", extra={"account_id": account_id, "count": len(recipient_ids)})
