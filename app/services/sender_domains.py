"""Sender-authentication state as the rest of the app reads it: the latest check of each
sending domain, and whether a domain's SPF and DKIM pass (the warm-up ramp's question)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Account, AuthVerdict, SenderAuthCheck
from app.settings import Settings
from rotator.sender_auth_rules import SPF_INCLUDES, spf_record_with


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


ITEMS = ("spf", "dkim", "dmarc", "mx", "ptr")


def list_domains(
    session: Session, settings: Settings, *, client_id: int | None, domain: str | None = None
) -> list[dict[str, Any]]:
    """Per own sending domain of the caller's accounts (`client_id` None: every client's),
    the latest verdicts with what was found and how to fix it; a domain not checked yet
    has `checked_at` null and no items."""
    query = select(Account).order_by(Account.id)
    if client_id is not None:
        query = query.where(Account.client_id == client_id)
    if domain is not None:
        query = query.where(Account.sending_domain == domain.lower())
    accounts: dict[str, list[Account]] = {}
    for account in session.scalars(query):
        if not settings.is_freemail(account.sending_domain):
            accounts.setdefault(account.sending_domain, []).append(account)
    checks = {c.domain: c for c in latest_domain_checks(session, sorted(accounts))}
    items = []
    for name, mine in sorted(accounts.items()):
        check = checks.get(name)
        entry: dict[str, Any] = {
            "domain": name,
            "checked_at": check.checked_at if check else None,
            "accounts": [a.id for a in mine],
            "providers": sorted({a.provider for a in mine}),
        }
        for item in ITEMS:
            entry[item] = check.results.get(item) if check else None
        items.append(entry)
    return items


def auth_warnings(
    session: Session, settings: Settings, domain: str, provider: str
) -> list[dict[str, str]]:
    """What a new account on `domain` should know, from the latest check: SPF or DKIM
    failing (with the fix), an SPF record that does not name the new account's provider,
    or no check yet. Nothing for a freemail domain (its DNS is not ours)."""
    if settings.is_freemail(domain):
        return []
    latest = latest_domain_checks(session, [domain])
    if not latest:
        return [
            {
                "code": "auth_unchecked",
                "message": f"{domain}: SPF and DKIM not checked yet; the daily check "
                "(sendfleet.sender_auth_check) reports them at GET /api/v1/domains",
                "fix": "",
            }
        ]
    check = latest[0]
    warnings = []
    for item in ("spf", "dkim"):
        if getattr(check, item) == AuthVerdict.FAIL:
            found = check.results.get(item, {})
            warnings.append(
                {
                    "code": f"{item}_failing",
                    "message": f"{domain}: {item.upper()} fails: {found.get('problem')}",
                    "fix": found.get("fix") or "",
                }
            )
    record = check.results.get("spf", {}).get("found")
    include = SPF_INCLUDES.get(provider)
    if check.spf == AuthVerdict.PASS and record and include and include not in record:
        mechanism = f"include:{include}"
        warnings.append(
            {
                "code": "spf_missing_provider",
                "message": f"{domain}: the SPF record does not name {mechanism}",
                "fix": f"replace the TXT record of {domain} with "
                f'"{spf_record_with(record, [mechanism])}"',
            }
        )
    return warnings
