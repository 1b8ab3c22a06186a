"""Rate guards: a campaign, an account or a client's sending domain whose recent sends bounce
or fail too often is paused, with who paused it (paused_by = 'guard'), why and the figures
(pause_details), an event and an alert naming the client.

The rate is over the last GUARD_WINDOW_SENDS final outcomes (sent, bounced, failed) since
the campaign was last started or resumed (the account: resumed) and within
GUARD_WINDOW_SECONDS, and is judged only once there are GUARD_MIN_SENDS of them. Each check
is one query walking one index backwards (events by campaign or by account, newest first)
and stopping after the window: its cost does not grow with a 1M-recipient campaign.

A campaign the guard paused for its own rates explains its bounces: they are not counted
against the accounts (or the domain) that sent it, so one bad list does not take the pool
out of rotation with it.
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
from worker.jobs import alerts
from worker.jobs.guards import GUARD

log = logging.getLogger(__name__)

_COUNT = """
    SELECT count(*) AS sends,
           count(*) FILTER (WHERE type = 'bounced') AS bounced,
           count(*) FILTER (WHERE type = 'failed') AS failed
    FROM recent
"""

CAMPAIGN_OUTCOMES = text(
    """
    WITH recent AS (
        SELECT e.type FROM campaigns c JOIN events e ON e.campaign_id = c.id
        WHERE c.id = :campaign_id AND c.status = 'running'
          AND e.type IN ('sent', 'bounced', 'failed')
          AND e.created_at >= greatest(CAST(:since AS timestamptz), c.updated_at)
        ORDER BY e.created_at DESC
        LIMIT :window
    )"""
    + _COUNT
)

# Outcomes of campaigns the guard paused for their own rates are left out (see above).
_EXPLAINED = """
    NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = e.campaign_id AND c.status = 'paused'
                AND c.paused_by = 'guard')
"""

# Where an account's window starts: its last resume (the partial index of migration 0010).
_SINCE_RESUMED = """
    WITH since AS (
        SELECT greatest(CAST(:since AS timestamptz), max(created_at)) AS at
        FROM events
        WHERE account_id = ANY(CAST(:ids AS int[])) AND type = 'account_resumed'
          AND created_at > :since
    ),"""

# Each account's last :window outcomes (one backward index scan each), then the newest
# :window of them all: bounded by accounts x window, however busy the domain was.
ACCOUNTS_OUTCOMES = text(
    _SINCE_RESUMED
    + """ recent AS (
        SELECT o.type FROM unnest(CAST(:ids AS int[])) AS acc(id), since,
        LATERAL (
            SELECT e.type, e.created_at FROM events e
            WHERE e.account_id = acc.id AND e.created_at >= since.at
              AND e.type IN ('sent', 'bounced', 'failed') AND"""
    + _EXPLAINED
    + """
            ORDER BY e.created_at DESC
            LIMIT :window
        ) AS o
        ORDER BY o.created_at DESC
        LIMIT :window
    )"""
    + _COUNT
)

DOMAIN_ACCOUNTS = text(
    "SELECT array_agg(id) FROM accounts WHERE client_id = :client_id AND sending_domain = :domain"
)

PAUSE_CAMPAIGN = text(
    """
    WITH paused AS (
        UPDATE campaigns
        SET status = 'paused', paused_reason = :reason, paused_by = :by,
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

# One account, or (whole_domain) every active account of its client on the domain.
PAUSE_ACCOUNTS = text(
    """
    WITH changed AS (
        UPDATE accounts
        SET status = 'paused', paused_until = :until, paused_reason = :reason,
            paused_by = :by, pause_details = CAST(:data AS jsonb), updated_at = now()
        WHERE status = 'active'
          AND (id = :account_id
               OR (:whole_domain AND client_id = :client_id AND sending_domain = :domain))
        RETURNING id, client_id
    )
    INSERT INTO events (type, account_id, client_id, data)
    SELECT 'account_paused', id, client_id, CAST(:data AS jsonb) FROM changed
    RETURNING account_id, client_id
    """
)


@dataclass(frozen=True)
class Rates:
    sends: int
    bounced: int
    failed: int

    def percent(self, count: int) -> float:
        return 100.0 * count / self.sends if self.sends else 0.0


@dataclass(frozen=True)
class Tripped:
    """Which rate crossed its threshold, with the figures to record and show."""

    rate: str  # "bounce" or "failure"
    rates: Rates
    threshold: float

    def figures(self, settings: Settings) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "sends": self.rates.sends,
            "bounced": self.rates.bounced,
            "failed": self.rates.failed,
            "percent": round(self.rates.percent(self._count()), 1),
            "threshold_percent": self.threshold,
            "min_sends": settings.guard_min_sends,
            "window_sends": settings.guard_window_sends,
        }

    def describe(self) -> str:
        word = "bounced" if self.rate == "bounce" else "failed"
        return (
            f"{self.rate} rate {self.rates.percent(self._count()):.1f} % over "
            f"{self.threshold:g} %: {self._count()} of the last {self.rates.sends} sends {word}"
        )

    def _count(self) -> int:
        return self.rates.bounced if self.rate == "bounce" else self.rates.failed


def judge(settings: Settings, rates: Rates) -> Tripped | None:
    if rates.sends < settings.guard_min_sends:
        return None
    if rates.percent(rates.bounced) > settings.guard_bounce_rate_percent:
        return Tripped("bounce", rates, settings.guard_bounce_rate_percent)
    if rates.percent(rates.failed) > settings.guard_failure_rate_percent:
        return Tripped("failure", rates, settings.guard_failure_rate_percent)
    return None


def _rates(session: Session, query: Any, params: dict[str, Any]) -> Rates:
    row = session.execute(query, params).one()
    return Rates(row.sends, row.bounced, row.failed)


def _window(settings: Settings, now: datetime) -> dict[str, Any]:
    return {
        "since": now - timedelta(seconds=settings.guard_window_seconds),
        "window": settings.guard_window_sends,
    }


def check_campaign(
    session: Session, settings: Settings, campaign_id: int, now: datetime
) -> Tripped | None:
    """Pauses the running campaign when its rates cross a threshold; the verdict when it did."""
    rates = _rates(
        session, CAMPAIGN_OUTCOMES, {"campaign_id": campaign_id, **_window(settings, now)}
    )
    tripped = judge(settings, rates)
    if tripped is None:
        return None
    reason = (
        f"paused by the {tripped.rate} guard: {tripped.describe()}. Check the list (or the "
        "content), then resume the campaign."
    )
    details = {"guard": f"campaign_{tripped.rate}_rate", **tripped.figures(settings)}
    paused = session.execute(
        PAUSE_CAMPAIGN,
        {
            "campaign_id": campaign_id,
            "reason": reason,
            "by": GUARD,
            "now": now,
            "data": json.dumps({"reason": reason, **details}),
        },
    ).first()
    if paused is None:  # another worker or an operator got there first
        return None
    log.warning("campaign.paused", extra={"campaign_id": campaign_id, "guard": details["guard"]})
    alerts.notify(
        f"campaign-paused:{campaign_id}",
        f"Campaign {campaign_id} ({paused.name}) {reason}",
        client_id=paused.client_id,
    )
    return tripped


def check_account(
    session: Session, settings: Settings, account_id: int, now: datetime
) -> Tripped | None:
    """Pauses the active account when its rates cross a threshold."""
    rates = _rates(session, ACCOUNTS_OUTCOMES, {"ids": [account_id], **_window(settings, now)})
    tripped = judge(settings, rates)
    if tripped is None:
        return None
    until = now + timedelta(seconds=settings.failure_pause_seconds)
    reason = f"paused by the {tripped.rate} guard: {tripped.describe()}"
    details = {"guard": f"account_{tripped.rate}_rate", **tripped.figures(settings)}
    paused = _pause_accounts(
        session, account_id=account_id, domain=None, client_id=None, until=until,
        reason=reason, details=details,
    )  # fmt: skip
    if not paused:
        return None
    client_id = paused[0][1]
    log.warning("account.paused", extra={"account_id": account_id, "guard": details["guard"]})
    alerts.notify(
        f"account-paused:{account_id}",
        f"Account {account_id} paused until {until:%Y-%m-%d %H:%M} UTC: {reason}",
        client_id=client_id,
    )
    return tripped


def check_domain(
    session: Session,
    settings: Settings,
    *,
    client_id: int,
    domain: str,
    now: datetime,
) -> Tripped | None:
    """Pauses every active account of the client on `domain` when together they cross a
    threshold. A freemail domain is shared with strangers: its accounts are judged one by
    one, never as a domain."""
    if settings.is_freemail(domain):
        return None
    ids = session.execute(DOMAIN_ACCOUNTS, {"client_id": client_id, "domain": domain}).scalar()
    if not ids:
        return None
    rates = _rates(session, ACCOUNTS_OUTCOMES, {"ids": list(ids), **_window(settings, now)})
    tripped = judge(settings, rates)
    if tripped is None:
        return None
    until = now + timedelta(seconds=settings.failure_pause_seconds)
    reason = f"sending domain {domain} paused by the {tripped.rate} guard: {tripped.describe()}"
    details = {
        "guard": f"domain_{tripped.rate}_rate",
        "sending_domain": domain,
        **tripped.figures(settings),
    }
    paused = _pause_accounts(
        session, account_id=None, domain=domain, client_id=client_id, until=until,
        reason=reason, details=details,
    )  # fmt: skip
    if not paused:
        return None
    ids_paused = [account_id for account_id, _ in paused]
    log.warning("sending_domain.paused", extra={"sending_domain": domain, "accounts": ids_paused})
    alerts.notify(
        f"domain-paused:{client_id}:{domain}",
        f"Sending domain {domain} paused: {len(ids_paused)} account(s) "
        f"({', '.join(map(str, ids_paused))}) until {until:%Y-%m-%d %H:%M} UTC. {reason}. "
        "Check the lists sent through it, then resume the accounts.",
        client_id=client_id,
    )
    return tripped


def _pause_accounts(
    session: Session,
    *,
    account_id: int | None,
    domain: str | None,
    client_id: int | None,
    until: datetime,
    reason: str,
    details: dict[str, Any],
) -> list[tuple[int, int]]:
    rows = session.execute(
        PAUSE_ACCOUNTS,
        {
            "account_id": account_id,
            "whole_domain": domain is not None,
            "client_id": client_id,
            "domain": domain,
            "until": until,
            "reason": reason,
            "by": GUARD,
            "data": json.dumps({"reason": reason, "until": until.isoformat(), **details}),
        },
    ).all()
    return [(row.account_id, row.client_id) for row in rows]


def check_after_refusal(
    session: Session,
    settings: Settings,
    *,
    campaign_id: int,
    account_id: int,
    now: datetime,
) -> bool:
    """Inline, after a bounce or a failure was recorded: the campaign first (a bad list
    explains its own bounces), then the account, then its sending domain. True when the
    account left rotation."""
    if check_campaign(session, settings, campaign_id, now) is not None:
        return False
    if check_account(session, settings, account_id, now) is not None:
        return True
    row = session.execute(
        text("SELECT client_id, sending_domain FROM accounts WHERE id = :id"), {"id": account_id}
    ).first()
    if row is None:
        return False
    return check_domain(
        session, settings, client_id=row.client_id, domain=row.sending_domain, now=now
    ) is not None  # fmt: skip
