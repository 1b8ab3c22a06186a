"""Choosing an account for each claimed recipient under every rate limit.

Rounds of one `reserve_many` call: each round offers every waiting recipient the account
with the most capacity left right now (round-robin among equals), reserving all windows of
all scopes at once. A refusal by an account-wide scope (account, sending domain) moves the
recipient on to its next account; a refusal by a scope no account can change (system,
client, recipient domain, campaign) postpones it until the limiter says room returns.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Account, AccountStatus, Campaign
from app.services.limits import (
    SYSTEM_KEY,
    LimitTable,
    account_day_window,
    recipient_domain_key,
)
from app.settings import Settings
from rotator.limiter import Decision, Limiter, Scope, Window
from rotator.selection import Candidate, order_candidates


@dataclass
class Due:
    id: int
    campaign_id: int
    email: str
    domain: str
    candidates: list[Candidate]
    client_id: int
    tried: set[int] = field(default_factory=set)
    # Accounts that had no capacity left today when this recipient asked.
    exhausted: set[int] = field(default_factory=set)
    # Earliest moment any refusing account or domain frees, when nothing could take it.
    retry_at: float | None = None

    def wait(self, until: float) -> None:
        self.retry_at = until if self.retry_at is None else min(self.retry_at, until)


@dataclass
class Pool:
    """The usable accounts of one pass, with the capacity left in each today."""

    accounts: dict[int, Account]
    remaining: dict[int, int]
    frees_at: dict[int, float] = field(default_factory=dict)
    blocked_until: dict[int, float] = field(default_factory=dict)
    # Offers of the current round not yet answered by the limiter, per account.
    tentative: Counter[int] = field(default_factory=Counter)
    # Refusals of this pass by the scope that refused (the limiter refusals metric).
    refusals: Counter[str] = field(default_factory=Counter)

    def candidates_for(self, campaign: Campaign) -> list[Candidate]:
        return [
            Candidate(
                account_id=a.id,
                provider=a.provider,
                sending_domain=a.sending_domain,
                remaining_today=self.remaining[a.id],
            )
            for a in self.accounts.values()
            if campaign_allows(campaign, a)
        ]


def campaign_allows(campaign: Campaign, account: Account) -> bool:
    """A client's accounts send only its campaigns; within the client, the campaign's
    account ids or tags choose."""
    if account.client_id != campaign.client_id:
        return False
    if campaign.account_ids:
        return account.id in campaign.account_ids
    if campaign.account_tags:
        return bool(set(campaign.account_tags) & set(account.tags or ()))
    return True


def load_pool(session: Session, limiter: Limiter, settings: Settings) -> Pool:
    accounts = {
        a.id: a
        for a in session.execute(
            select(Account).where(
                Account.status == AccountStatus.ACTIVE.value,
                Account.last_health_ok.is_not(False),
            )
        ).scalars()
    }
    day_windows = [account_day_window(a, settings) for a in accounts.values()]
    used = limiter.used(day_windows) if day_windows else []
    remaining = {w.key: max(w.limit - u, 0) for w, u in zip(day_windows, used, strict=True)}
    return Pool(accounts=accounts, remaining={a: remaining[str(a)] for a in accounts})


@dataclass(frozen=True)
class Assigned:
    due: Due
    account_id: int
    token: str
    # The moment (epoch seconds) its reservation was placed at: it is sent then.
    at: float


def assign(
    due: list[Due],
    pool: Pool,
    campaigns: dict[int, Campaign],
    table: LimitTable,
    limiter: Limiter,
    settings: Settings,
    now: datetime,
) -> tuple[list[Assigned], list[Due]]:
    """Rounds of one reserve_many call: each round offers every waiting recipient its best
    untried account; refusals by account-wide scopes move it to its next account, refusals
    by scopes no account can change (system, client, recipient domain, campaign) postpone
    it. Each reservation is placed at the earliest moment within DISPATCH_HORIZON_SECONDS
    that all its windows allow (plus SEND_JITTER_SECONDS of random delay)."""
    assigned: list[Assigned] = []
    postponed: list[Due] = []
    blocked: dict[tuple[Scope, str], float] = {}
    cursor = int(now.timestamp())
    waiting = due
    while waiting:
        offers: list[tuple[Due, Account, list[Window]]] = []
        next_round: list[Due] = []
        pool.tentative.clear()
        for item in waiting:
            cursor += 1
            shared_block = _shared_block(blocked, item)
            if shared_block is not None:
                item.wait(shared_block)
                postponed.append(item)
                continue
            account = _next_account(item, pool, cursor)
            if account is _LATER:
                next_round.append(item)
                continue
            if account is None:
                postponed.append(item)
                continue
            # Taken tentatively, so the next recipient of this round sees it and rotates on.
            pool.remaining[account.id] -= 1
            pool.tentative[account.id] += 1
            campaign = campaigns[item.campaign_id]
            windows = table.windows(
                account=account,
                recipient_domain=item.domain,
                campaign_id=campaign.id,
                campaign_daily_cap=campaign.daily_cap,
            )
            offers.append((item, account, windows))
        if not offers:
            postponed += next_round
            break
        jitter = settings.send_jitter_seconds
        decisions = limiter.reserve_many(
            [w for _, _, w in offers],
            horizon=settings.dispatch_horizon_seconds,
            jitter=[random.uniform(0, jitter) for _ in offers] if jitter else None,
        )
        for (item, account, _), decision in zip(offers, decisions, strict=True):
            if decision.allowed:
                assigned.append(Assigned(item, account.id, decision.token, decision.at))
                continue
            pool.remaining[account.id] += 1
            if decision.refused is not None:
                pool.refusals[decision.refused.scope.value] += 1
            _note_refusal(decision, item, account, pool, blocked, table)
            if decision.refused is not None and decision.refused.scope in (
                Scope.ACCOUNT,
                Scope.SENDING_DOMAIN,
            ):
                next_round.append(item)
            else:
                postponed.append(item)
        waiting = next_round
    # Only now, with this pass's reservations made, is "when does it free" meaningful.
    for item in postponed:
        for account_id in item.exhausted:
            item.wait(_frees_at(account_id, pool, limiter, settings))
    return assigned, postponed


def _shared_block(blocked: dict[tuple[Scope, str], float], item: Due) -> float | None:
    for key in (
        (Scope.SYSTEM, SYSTEM_KEY),
        (Scope.CLIENT, str(item.client_id)),
        (Scope.RECIPIENT_DOMAIN, recipient_domain_key(item.client_id, item.domain)),
        (Scope.CAMPAIGN, str(item.campaign_id)),
    ):
        if key in blocked:
            return blocked[key]
    return None


def _note_refusal(
    decision: Decision,
    item: Due,
    account: Account,
    pool: Pool,
    blocked: dict[tuple[Scope, str], float],
    table: LimitTable,
) -> None:
    refused = decision.refused
    until = time.time() + decision.retry_after
    item.wait(until)
    if refused is None:
        return
    if refused.scope == Scope.ACCOUNT:
        pool.blocked_until[account.id] = until
    elif refused.scope == Scope.SENDING_DOMAIN:
        for other in pool.accounts.values():
            # Freemail accounts each have their own key (app.services.limits).
            if table.sending_domain_key(other) == refused.key:
                pool.blocked_until[other.id] = until
    else:
        blocked[(refused.scope, refused.key)] = until


class _Later:
    """Sentinel: every untried account is full only by this round's unanswered offers."""


_LATER: Any = _Later()


def _next_account(item: Due, pool: Pool, cursor: int) -> Account | None:
    """The best account this recipient has not tried yet, by the capacity left right now."""
    live = []
    later = False
    for candidate in item.candidates:
        account_id = candidate.account_id
        if account_id in item.tried:
            continue
        if account_id in pool.blocked_until:
            item.wait(pool.blocked_until[account_id])
        elif pool.remaining[account_id] > 0:
            live.append(replace(candidate, remaining_today=pool.remaining[account_id]))
        elif pool.tentative[account_id] > 0:
            later = True
        else:
            item.exhausted.add(account_id)
    if not live:
        return _LATER if later else None
    choice = order_candidates(live, cursor=cursor)[0]
    item.tried.add(choice.account_id)
    return pool.accounts[choice.account_id]


def _frees_at(account_id: int, pool: Pool, limiter: Limiter, settings: Settings) -> float:
    if account_id not in pool.frees_at:
        window = account_day_window(pool.accounts[account_id], settings)
        pool.frees_at[account_id] = limiter.frees_at(window) or time.time() + 60
    return pool.frees_at[account_id]
