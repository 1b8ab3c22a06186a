"""What was sent, as the database records it: the source the limiter's windows are rebuilt
from when Redis loses them, and the figures the API shows when Redis cannot answer.

A send is an SMTP attempt (an outcome event: sent, bounced, deferred, failed, unknown) at
the time of its event, or a reservation still in flight (a queued or sending row) at the
moment it was placed at (its slot, possibly ahead) or else when it was queued. Both count
until their window (a minute, a day) has passed, the way the limiter counts them; an
attempt is dated a little after its reservation was, so a rebuilt window frees a little
later than the original would have, never earlier."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

DAY = timedelta(days=1)
ATTEMPT_TYPES = ("sent", "bounced", "deferred", "failed", "unknown")

# member: what the rebuilt window holds (the live reservation token of an in-flight row,
# so releasing it later frees its place; an attempt's event id otherwise).
SENDS_SINCE = text(
    """
    SELECT 'rb:' || e.id AS member, e.created_at AS at, e.account_id, r.campaign_id, r.domain
    FROM events e JOIN recipients r ON r.id = e.recipient_id
    WHERE e.created_at > :since AND e.account_id IS NOT NULL
      AND e.type IN ('sent', 'bounced', 'deferred', 'failed', 'unknown')
    UNION ALL
    SELECT r.reservation, coalesce(r.slot_at, r.queued_at, :now), r.account_id, r.campaign_id,
        r.domain
    FROM recipients r
    WHERE r.status IN ('queued', 'sending')
      AND r.reservation IS NOT NULL AND r.account_id IS NOT NULL
    """
)

SENDS_BY_ACCOUNT = text(
    """
    SELECT account_id, sum(n)::int AS n FROM (
        SELECT e.account_id, count(*) AS n FROM events e
        WHERE e.account_id = ANY(:ids) AND e.created_at > :since
          AND e.type IN ('sent', 'bounced', 'deferred', 'failed', 'unknown')
        GROUP BY e.account_id
        UNION ALL
        SELECT r.account_id, count(*) FROM recipients r
        WHERE r.account_id = ANY(:ids) AND r.status IN ('queued', 'sending')
          AND r.reservation IS NOT NULL
        GROUP BY r.account_id
    ) AS counted
    GROUP BY account_id
    """
)


def sends_in_last_day(
    session: Session, account_ids: Sequence[int], now: datetime
) -> dict[int, int]:
    """Per account: what its day window holds, counted from the database."""
    if not account_ids:
        return {}
    rows = session.execute(SENDS_BY_ACCOUNT, {"ids": list(account_ids), "since": now - DAY})
    counts = dict.fromkeys(account_ids, 0)
    counts.update({row.account_id: row.n for row in rows})
    return counts
