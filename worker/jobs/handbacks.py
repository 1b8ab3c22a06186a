"""Bounded hand-backs: a recipient refused for a reason about the ACCOUNT (credentials,
quota, a blocked sending IP, the sending domain's authentication) goes back to `pending`
for another account, at most as many times as its campaign has accounts it may use, and
never more than MAX_HANDBACKS; past that it is `failed` with the last reply.

Attempt counts are never reset: `attempts` counts every claim that went to a server,
`handbacks` the ones refused for the account's sake. The retry schedule for deferrals
counts deferrals only (attempts - handbacks), so a recipient handed back twice still gets
every retry delay; the total number of tries is bounded by both limits together.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.settings import Settings

# The accounts a campaign may use, whatever their status (worker.jobs.assignment's
# campaign_allows in SQL): listed ids, else any tag in common, else every account.
ALLOWED_ACCOUNTS = text(
    """
    SELECT count(*) FROM accounts a JOIN campaigns c ON c.id = :campaign_id
    WHERE CASE
        WHEN cardinality(c.account_ids) > 0 THEN a.id = ANY(c.account_ids)
        WHEN cardinality(c.account_tags) > 0 THEN a.tags && c.account_tags
        ELSE true END
    """
)

HANDBACKS = text("SELECT handbacks FROM recipients WHERE id = :id AND status = 'sending'")

# Nothing reached the recipient: back to the dispatcher, counted, attempts kept.
HAND_BACK = text(
    """
    WITH back AS (
        UPDATE recipients
        SET status = 'pending', updated_at = :now, sending_since = NULL, next_attempt_at = NULL,
            handbacks = handbacks + 1, account_id = NULL, reservation = NULL, claimed_by = NULL,
            message_id = NULL, last_smtp_code = :code, last_smtp_text = :reply
        WHERE id = :id AND status = 'sending'
        RETURNING id, campaign_id
    )
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
    SELECT 'requeued', campaign_id, id, :account_id, CAST(:data AS jsonb) FROM back
    RETURNING recipient_id
    """
)


def handback_limit(session: Session, settings: Settings, campaign_id: int) -> int:
    allowed = session.execute(ALLOWED_ACCOUNTS, {"campaign_id": campaign_id}).scalar_one()
    return min(max(int(allowed), 1), settings.max_handbacks)


def handbacks_so_far(session: Session, recipient_id: int) -> int | None:
    """None when the row is no longer ours (`sending`)."""
    value = session.execute(HANDBACKS, {"id": recipient_id}).scalar_one_or_none()
    return None if value is None else int(value)
