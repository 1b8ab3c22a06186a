"""Sender-authentication state as the rest of the app reads it: the latest check of each
sending domain, and whether a domain's SPF and DKIM pass (the warm-up ramp's question)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AuthVerdict, SenderAuthCheck


def latest_domain_checks(
    session: Session, domains: Sequence[str] | None = None
) -> list[SenderAuthCheck]:
    """The latest check per domain (every domain when `domains` is None), by domain."""
    query = (
        select(SenderAuthCheck)
        .distinct(SenderAuthCheck.domain)
        .order_by(
            SenderAuthCheck.domain, SenderAuthCheck.checked_at.desc(), SenderAuthCheck.id.desc()
        )
    )
    if domains is not None:
        if not domains:
            return []
        query = query.where(SenderAuthCheck.domain.in_([d.lower() for d in domains]))
    return list(session.scalars(query))


def domain_auth_passing(session: Session, domain: str) -> bool | None:
    """True when the latest check found SPF and DKIM both passing, False when either
    failed. None when the domain was never checked, or the latest check could not tell
    (a resolver did not answer and nothing failed): no verdict either way."""
    latest = latest_domain_checks(session, [domain])
    if not latest:
        return None
    verdicts = {latest[0].spf, latest[0].dkim}
    if AuthVerdict.FAIL in verdicts:
        return False
    if verdicts == {AuthVerdict.PASS}:
        return True
    return None
