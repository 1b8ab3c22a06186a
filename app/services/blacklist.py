"""Blacklist state as the rest of the app reads it: which targets (IPs, sending domains) an
account stands on, the latest check of each, and whether an account is listed.

An account's targets: its sending domain (unless freemail: that DNS is not ours), and the
IP its mail leaves from: `accounts.sending_ip` when declared, else, for a Postfix account,
every SENDING_IPS relay. Targets are global; a client sees those of its own accounts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Account, BlacklistCheck, BlacklistStatus
from app.settings import Settings

POSTFIX = "postfix"
IP, DOMAIN = "ip", "domain"


@dataclass(frozen=True, order=True)
class Target:
    kind: str  # "ip" or "domain"
    value: str


def account_targets(account: Account, settings: Settings) -> list[Target]:
    targets = []
    if not settings.is_freemail(account.sending_domain):
        targets.append(Target(DOMAIN, account.sending_domain))
    if account.sending_ip:
        targets.append(Target(IP, account.sending_ip))
    elif account.provider == POSTFIX:
        targets.extend(Target(IP, ip) for ip in settings.sending_ips)
    return targets


def all_targets(accounts: Iterable[Account], settings: Settings) -> list[Target]:
    """Every target to check: SENDING_IPS whether or not an account uses them yet, and
    each account's."""
    found = {Target(IP, ip) for ip in settings.sending_ips}
    for account in accounts:
        found.update(account_targets(account, settings))
    return sorted(found)


def latest_checks(
    session: Session, targets: Sequence[str] | None = None, *, conclusive: bool = False
) -> list[BlacklistCheck]:
    """The latest check per target (all targets when `targets` is None), by target;
    `conclusive`: the latest that said listed or clean."""
    query = (
        select(BlacklistCheck)
        .distinct(BlacklistCheck.target)
        .order_by(BlacklistCheck.target, BlacklistCheck.checked_at.desc(), BlacklistCheck.id.desc())
    )
    if conclusive:
        query = query.where(BlacklistCheck.status != BlacklistStatus.UNKNOWN.value)
    if targets is not None:
        if not targets:
            return []
        query = query.where(BlacklistCheck.target.in_(list(targets)))
    return list(session.scalars(query))


def account_blacklisted(
    session: Session, account_id: int, *, settings: Settings | None = None
) -> bool:
    """True when the latest check of the account's domain or IP found it listed. Unknown
    (a list did not answer) and never-checked targets are not listings."""
    account = session.get(Account, account_id)
    if account is None:
        return False
    settings = settings or current_app.extensions["settings"]
    values = [t.value for t in account_targets(account, settings)]
    return any(c.status == BlacklistStatus.LISTED for c in latest_checks(session, values))


def list_blacklist(
    session: Session,
    settings: Settings,
    *,
    client_id: int | None,
    status: str | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """The latest check per target the caller may see (`client_id` None: every target),
    with the caller's accounts that stand on it."""
    query = select(Account).order_by(Account.id)
    if client_id is not None:
        query = query.where(Account.client_id == client_id)
    on_target: dict[str, list[int]] = {}
    for account in session.scalars(query):
        for target in account_targets(account, settings):
            on_target.setdefault(target.value, []).append(account.id)
    visible = None if client_id is None else sorted(on_target)
    items = []
    for check in latest_checks(session, visible):
        if (status and check.status != status) or (kind and check.target_kind != kind):
            continue
        items.append(
            {
                "target": check.target,
                "kind": check.target_kind,
                "status": check.status,
                "lists_hit": list(check.lists_hit),
                "lists": check.list_results,
                "note": check.note,
                "checked_at": check.checked_at,
                "accounts": on_target.get(check.target, []),
            }
        )
    return items
