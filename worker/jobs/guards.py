"""Guards that look past one reply: a pattern of refusals says what one refusal cannot.

- Campaign content guard: messages of one campaign refused for their content on several
  accounts (or many times) mean the campaign, not the accounts, is the problem: pause the
  campaign, say why (campaigns.paused_reason, a campaign_paused event, an alert).
- Account refusal pattern: most of an account's last recipients refused, across several
  recipient domains, is something no single domain explains: pause the account.

Both run inline when an outcome is recorded, on the events just written in the same
transaction; each is one indexed query (events by campaign or by account, newest first).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.settings import Settings
from rotator.classify import SmtpReply
from worker.jobs import alerts

log = logging.getLogger(__name__)

GUARD = "guard"  # accounts/campaigns.paused_by of every guard pause

# Content refusals of this campaign since it was last started or resumed (either moves
# campaigns.updated_at), within the window.
CONTENT_REFUSALS = text(
    """
    SELECT count(*) AS refusals, count(DISTINCT e.account_id) AS accounts
    FROM campaigns c JOIN events e ON e.campaign_id = c.id
    WHERE c.id = :campaign_id AND c.status = 'running'
      AND e.type = 'failed' AND e.data->>'about' = 'content'
      AND e.created_at >= greatest(CAST(:since AS timestamptz), c.updated_at)
    """
)

PAUSE_CAMPAIGN = text(
    """
    WITH paused AS (
        UPDATE campaigns
        SET status = 'paused', paused_reason = :reason, paused_by = 'guard',
            pause_details = CAST(:data AS jsonb), updated_at = :now
        WHERE id = :campaign_id AND status = 'running'
        RETURNING id, name, client_id
    ), logged AS (
        INSERT INTO events (type, campaign_id, client_id, data)
        SELECT 'campaign_paused', id, client_id, CAST(:data AS jsonb) FROM paused
    )
    SELECT id, name, client_id FROM paused
    """
)

# The account's last recipient outcomes: every success, and the refusals the outcome
# recorder marked as about a recipient or its domain (not content, not the session).
RECENT_OUTCOMES = text(
    """
    SELECT type <> 'sent' AS refused, data->>'refused_domain' AS domain
    FROM events
    WHERE account_id = :account_id AND created_at > :since
      AND (type = 'sent'
           OR (type IN ('bounced', 'failed', 'deferred') AND data ? 'refused_domain'))
    ORDER BY created_at DESC
    LIMIT :window
    """
)


def check_content(
    session: Session, settings: Settings, campaign_id: int, reply: SmtpReply, now: datetime
) -> bool:
    """Pauses the campaign when its content refusals repeat; True when it did."""
    since = now - timedelta(seconds=settings.content_guard_window_seconds)
    counts = session.execute(CONTENT_REFUSALS, {"campaign_id": campaign_id, "since": since}).one()
    if (
        counts.accounts < settings.content_guard_accounts
        and counts.refusals < settings.content_guard_refusals
    ):
        return False
    reason = (
        f"content refused {counts.refusals} time(s) on {counts.accounts} account(s); "
        f"last: {str(reply)[:200]}. Review the subject and body (links, wording, "
        "attachments), then resume the campaign."
    )
    data = {
        "reason": reason,
        "guard": "content",
        "threshold_accounts": settings.content_guard_accounts,
        "threshold_refusals": settings.content_guard_refusals,
        "refusals": counts.refusals,
        "accounts": counts.accounts,
        "smtp_code": reply.code,
        "enhanced": reply.enhanced,
    }
    paused = session.execute(
        PAUSE_CAMPAIGN,
        {"campaign_id": campaign_id, "reason": reason, "now": now, "data": json.dumps(data)},
    ).first()
    if paused is None:  # another worker paused it first, or an operator did
        return False
    log.warning("campaign.paused", extra={"campaign_id": campaign_id, "reason": reason[:200]})
    alerts.notify(
        f"campaign-paused:{campaign_id}",
        f"Campaign {campaign_id} ({paused.name}) paused by the content guard: {reason}",
        client_id=paused.client_id,
    )
    return True


@dataclass(frozen=True)
class Pattern:
    """Why the account's refusals are its own problem, and the figures that say so."""

    reason: str
    details: dict[str, Any]


def check_account_pattern(
    session: Session, settings: Settings, account_id: int, now: datetime
) -> Pattern | None:
    """Why to pause the account when most of its last recipients were refused across
    several domains, else None. The caller pauses the account."""
    rows = session.execute(
        RECENT_OUTCOMES,
        {
            "account_id": account_id,
            "since": now - timedelta(hours=1),
            "window": settings.account_refusal_window,
        },
    ).all()
    if len(rows) < settings.account_refusal_window:
        return None
    refused = [row.domain for row in rows if row.refused]
    domains = {domain for domain in refused if domain}
    if (
        len(refused) < settings.account_refusal_threshold
        or len(domains) < settings.account_refusal_domains
    ):
        return None
    reason = (
        f"{len(refused)} of its last {len(rows)} recipients refused across "
        f"{len(domains)} domains ({', '.join(sorted(domains)[:5])})"
    )
    details = {
        "guard": "account_refusal_pattern",
        "refused": len(refused),
        "outcomes": len(rows),
        "domains": len(domains),
        "threshold": settings.account_refusal_threshold,
        "min_domains": settings.account_refusal_domains,
    }
    return Pattern(reason, details)
