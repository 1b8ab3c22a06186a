"""Recipients by status, read from recipient_counts, which the statement triggers of
migration 0013 keep with every insert, update and delete of recipients: a read sums a
campaign's few slot rows instead of counting its million recipients. Exact for the
reader's snapshot, since each slot row commits with the recipient rows it counts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import Campaign, RecipientCount, RecipientStatus

# Slots of backends that are gone, folded into slot 0 so a campaign keeps few rows however
# many connections came and went. A live backend's slot is left alone: folding it would
# lock rows its open transaction may be about to update. (A recycled pid that starts
# writing meanwhile only waits for this statement: the sums stay exact either way.)
FOLD_GONE_SLOTS = text(
    """
    WITH gone AS (
        DELETE FROM recipient_counts
        WHERE slot <> 0
          AND slot NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
        RETURNING campaign_id, status, n
    ), folded AS (
        INSERT INTO recipient_counts AS c (campaign_id, status, slot, n)
        SELECT campaign_id, status, 0, sum(n) FROM gone GROUP BY campaign_id, status
        ORDER BY 1, 2
        ON CONFLICT (campaign_id, status, slot) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT count(*) FROM gone
    """
)
DROP_EMPTY = text("DELETE FROM recipient_counts WHERE slot = 0 AND n = 0")
# A repair for counts gone wrong behind the triggers' back (a restore with triggers
# disabled, session_replication_role = replica): SHARE mode holds off every writer of
# recipients until the caller commits, so the new counts start exactly where they go on.
RECOUNT = [
    text("LOCK TABLE recipients IN SHARE MODE"),
    text("DELETE FROM recipient_counts"),
    text(
        "INSERT INTO recipient_counts (campaign_id, status, slot, n) "
        "SELECT campaign_id, status, 0, count(*) FROM recipients GROUP BY campaign_id, status"
    ),
]


def zero_counts() -> dict[str, int]:
    return dict.fromkeys((s.value for s in RecipientStatus), 0)


def campaign_counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Every campaign of `campaign_ids` with every status as a key, zeros included."""
    counts = {campaign_id: zero_counts() for campaign_id in campaign_ids}
    if not campaign_ids:
        return counts
    rows = session.execute(
        select(RecipientCount.campaign_id, RecipientCount.status, func.sum(RecipientCount.n))
        .where(RecipientCount.campaign_id.in_(campaign_ids))
        .group_by(RecipientCount.campaign_id, RecipientCount.status)
    )
    for campaign_id, status, n in rows:
        counts[campaign_id][status] = int(n)
    return counts


def client_counts(session: Session, client_id: int) -> dict[str, int]:
    """All the client's recipients by status, every status a key."""
    counts = zero_counts()
    rows = session.execute(
        select(RecipientCount.status, func.sum(RecipientCount.n))
        .join(Campaign, Campaign.id == RecipientCount.campaign_id)
        .where(Campaign.client_id == client_id)
        .group_by(RecipientCount.status)
    )
    for status, n in rows:
        counts[status] = int(n)
    return counts


def compact(session: Session) -> int:
    """Folds the slots of backends that are gone into slot 0 and drops empty rows; returns
    how many slot rows were folded. Changes no sum."""
    folded = int(session.execute(FOLD_GONE_SLOTS).scalar_one())
    session.execute(DROP_EMPTY)
    return folded


def recount(session: Session) -> None:
    """Counts every campaign afresh from recipients (blocks their writers meanwhile)."""
    for statement in RECOUNT:
        session.execute(statement)
