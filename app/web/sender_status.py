"""What the sender pool pages show of each sending domain and IP: the latest blacklist check
(app.services.blacklist) and the latest sender-authentication check
(app.services.sender_domains), or "not checked yet" when there is none."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.models import Account
from app.services.blacklist import account_targets, latest_checks
from app.services.sender_domains import latest_domain_checks
from app.settings import Settings

AUTH_ITEMS = ("spf", "dkim", "dmarc", "mx", "ptr")
NOT_CHECKED = "not checked yet"


@dataclass
class BlacklistState:
    status: str  # clean | listed | unknown | not checked yet
    lists_hit: list[str] = field(default_factory=list)
    checked_at: datetime | None = None
    targets: list[str] = field(default_factory=list)


@dataclass
class AuthState:
    domain: str
    status: str  # pass | fail | unknown | not checked yet
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked_at: datetime | None = None


def blacklist_states(
    session: Session, accounts: Iterable[Account], settings: Settings
) -> dict[int, BlacklistState]:
    """Per account: the worst latest check of its domain and IP (listed beats unknown
    beats clean); "not checked yet" when none of them was ever checked."""
    targets = {a.id: [t.value for t in account_targets(a, settings)] for a in accounts}
    values = sorted({v for vs in targets.values() for v in vs})
    checks = {c.target: c for c in latest_checks(session, values)}
    states: dict[int, BlacklistState] = {}
    for account_id, mine in targets.items():
        found = [checks[v] for v in mine if v in checks]
        if not found:
            states[account_id] = BlacklistState(NOT_CHECKED, targets=mine)
            continue
        order = {"listed": 0, "unknown": 1, "clean": 2}
        worst = min(found, key=lambda c: order.get(c.status, 1))
        states[account_id] = BlacklistState(
            worst.status,
            sorted({hit for c in found for hit in c.lists_hit}),
            max(c.checked_at for c in found),
            mine,
        )
    return states


def auth_states(session: Session, domains: Iterable[str]) -> dict[str, AuthState]:
    wanted = sorted({d.lower() for d in domains})
    checks = {c.domain: c for c in latest_domain_checks(session, wanted)}
    states: dict[str, AuthState] = {}
    for domain in wanted:
        check = checks.get(domain)
        if check is None:
            states[domain] = AuthState(domain, NOT_CHECKED)
            continue
        items: dict[str, dict[str, Any]] = {}
        for item in AUTH_ITEMS:
            verdict = getattr(check, item)
            if verdict is None:
                continue
            detail = (check.results or {}).get(item)
            items[item] = {"verdict": verdict, **_detail(detail)}
        verdicts = {check.spf, check.dkim, check.dmarc}
        status = "fail" if "fail" in verdicts else "pass" if verdicts == {"pass"} else "unknown"
        states[domain] = AuthState(domain, status, items, check.checked_at)
    return states


def _detail(detail: Any) -> dict[str, Any]:
    """The check's words for one item (found, problem, fix), whatever of them it kept."""
    if isinstance(detail, dict):
        return {k: v for k, v in detail.items() if k != "verdict"}
    if detail:
        return {"found": str(detail)}
    return {}
