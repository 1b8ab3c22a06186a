"""Receiving domains that asked us to slow down (greylisting, per-domain throttling).

A temporary refusal at RCPT is about the recipient's domain, not the account: the
recipient is deferred and its domain gets nothing before `until`. The back-off starts at
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
    INSERT INTO domain_backoffs AS b (domain, until, reason, hits, updated_at)
    VALUES (:domain, CAST(:now AS timestamptz) + make_interval(secs => :base), :reason, 1,
            :now)
    ON CONFLICT (domain) DO UPDATE SET
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

CURRENT = text("SELECT until FROM domain_backoffs WHERE domain = :domain")

ACTIVE_AMONG = text(
    "SELECT domain, until FROM domain_backoffs WHERE domain = ANY(:domains) AND until > :now"
)


def slow_down(
    session: Session, settings: Settings, domain: str, reason: str, now: datetime
) -> datetime:
    """Records one refusal by `domain`; returns when it may be sent to again."""
    params: dict[str, Any] = {
        "domain": domain,
        "now": now,
        "reason": reason[:300],
        "base": settings.domain_backoff_seconds,
        "max": max(settings.domain_backoff_max_seconds, settings.domain_backoff_seconds),
        "max_exponent": _MAX_EXPONENT,
    }
    row = session.execute(UPSERT, params).first()
    if row is None:  # a back-off already runs: a send from before it began
        until: datetime = session.execute(CURRENT, {"domain": domain}).scalar_one()
        return until
    log.info(
        "domain.backoff",
        extra={"recipient_domain": domain, "hits": row.hits, "until": row.until.isoformat()},
    )
    return row.until  # type: ignore[no-any-return]


def active_backoffs(session: Session, domains: list[str], now: datetime) -> dict[str, datetime]:
    if not domains:
        return {}
    rows = session.execute(ACTIVE_AMONG, {"domains": domains, "now": now}).all()
    return {row.domain: row.until for row in rows}
