"""Blacklist state as the rest of the app reads it: which targets (IPs, sending domains) an
account stands on, the latest check of each, and whether an account is listed.

An account's targets: its sending domain (unless freemail: that DNS is not ours), and the
IP its mail leaves from: `accounts.sending_ip` when declared, else, for a Postfix account,
every SENDING_IPS relay. Targets are global; a client sees those of its own accounts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


def visible_targets(
    session: Session, settings: Settings, *, client_id: int | None
) -> set[str] | None:
    """The targets a caller may see: those of the client's accounts; None: every target
    (an admin)."""
    if client_id is None:
        return None
    accounts = session.scalars(select(Account).where(Account.client_id == client_id))
    return {t.value for account in accounts for t in account_targets(account, settings)}
