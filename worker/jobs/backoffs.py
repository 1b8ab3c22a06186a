"""Receiving domains that asked us to slow down (greylisting, per-domain throttling).

A temporary refusal at RCPT is about the recipient's domain, not the account: the
recipient is deferred and its domain gets nothing from the same client before `until`
(another client sends from other accounts and domains, which the receiving server judges
apart). The back-off starts at
DOMAIN_BACKOFF_SECONDS and doubles each time the domain refuses again after its back-off
ended, up to DOMAIN_BACKOFF_MAX_SECONDS; a domain quiet for that long starts over. Refusals
of sends that were already under way while a back-off runs do not extend it (greylisting
refuses every new recipient once: a burst of them is one signal, not many).

Kept in PostgreSQL (domain_backoffs), so a Redis restart does not forget it. The dispatcher
reads it for the rows it claimed and postpones theirs to `until`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.settings import Settings

log = logging.getLogger(__name__)

# Doubling stops growing the exponent here; DOMAIN_BACKOFF_MAX_SECONDS bounds it anyway.
_MAX_EXPONENT = 30

UPSERT = text(
    """
    INSERT INTO domain_backoffs AS b (client_id, domain, until, reason, hits, updated_at)
    VALUES ((SELECT client_id FROM campaigns WHERE id = :campaign_id), :domain,
            CAST(:now AS timestamptz) + make_interval(secs => :base), :reason, 1, :now)
    ON CONFLICT (client_id, domain) DO UPDATE SET
        hits = CASE WHEN b.until < CAST(:now AS timestamptz) - make_interval(secs => :max)
                    THEN 1 ELSE b.hits + 1 END,
        until = CAST(:now AS timestamptz) + make_interval(secs =>
                CASE WHEN b.until < CAST(:now AS timestamptz) - make_interval(secs => :max)
                     THEN :base
                     ELSE least(:base * power(2, least(b.hits, :max_exponent)), :max) END),
        reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at
    WHERE b.until <= CAST(:now AS timestamptz)
    RETURNING hits, until
    """
)

CURRENT = text(
    """
    SELECT until FROM domain_backoffs
    WHERE domain = :domain AND client_id = (SELECT client_id FROM campaigns WHERE id = :campaign_id)
    """
)

ACTIVE_AMONG = text(
    """
    SELECT client_id, domain, until FROM domain_backoffs
    WHERE domain = ANY(:domains) AND until > :now
    """
)


def slow_down(
    session: Session,
    settings: Settings,
    domain: str,
    reason: str,
    now: datetime,
    *,
    campaign_id: int,
) -> datetime:
    """Records one refusal by `domain` of a send of `campaign_id`; returns when the
    campaign's client may send to it again."""
    params: dict[str, Any] = {
        "campaign_id": campaign_id,
        "domain": domain,
        "now": now,
        "reason": reason[:300],
        "base": settings.domain_backoff_seconds,
        "max": max(settings.domain_backoff_max_seconds, settings.domain_backoff_seconds),
        "max_exponent": _MAX_EXPONENT,
    }
    row = session.execute(UPSERT, params).first()
    if row is None:  # a back-off already runs: a send from before it began
        current = {"domain": domain, "campaign_id": campaign_id}
        until: datetime = session.execute(CURRENT, current).scalar_one()
        return until
    log.info(
        "domain.backoff",
        extra={"recipient_domain": domain, "hits": row.hits, "until": row.until.isoformat()},
    )
    return row.until  # type: ignore[no-any-return]


def active_backoffs(
    session: Session, domains: list[str], now: datetime
) -> dict[tuple[int, str], datetime]:
    """The back-offs running now among `domains`, by (client, domain)."""
    if not domains:
        return {}
    rows = session.execute(ACTIVE_AMONG, {"domains": domains, "now": now}).all()
    return {(row.client_id, row.domain): row.until for row in rows}
