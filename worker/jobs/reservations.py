"""Giving limiter reservations back for sends that never reached a server (a lost task, a
campaign paused after dispatch, an account that left rotation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Account, Campaign
from app.services.limits import load_limits
from app.settings import Settings
from rotator.limiter import Limiter


def release_reservations(
    session: Session, limiter: Limiter, settings: Settings, rows: Sequence[Any]
) -> int:
    """`rows` carry account_id, campaign_id, domain and reservation (the limiter token)."""
    held = [r for r in rows if r.reservation and r.account_id]
    if not held:
        return 0
    limits = load_limits(session, settings)
    accounts = {
        a.id: a
        for a in session.execute(
            select(Account).where(Account.id.in_({r.account_id for r in held}))
        ).scalars()
    }
    caps = dict(
        session.execute(
            select(Campaign.id, Campaign.daily_cap).where(
                Campaign.id.in_({r.campaign_id for r in held})
            )
        ).all()
    )
    released = 0
    for row in held:
        account = accounts.get(row.account_id)
        if account is None:
            continue
        windows = limits.windows(
            account=account,
            recipient_domain=row.domain,
            campaign_id=row.campaign_id,
            campaign_daily_cap=caps.get(row.campaign_id),
        )
        limiter.release(windows, row.reservation)
        released += 1
    return released
