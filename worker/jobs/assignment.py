"""Choosing an account for each claimed recipient under every rate limit.

Rounds of one `reserve_many` call: each round offers every waiting recipient the account
with the most capacity left right now (equals take turns, starting where a cursor that moves
every pass says), reserving all windows of all scopes at once. A refusal by an account-wide
scope (account, sending domain) moves the recipient on to its next account; a refusal by a
scope no account can change (system, client, recipient domain, campaign) postpones it until
the limiter says room returns.

The choice is a heap of a campaign's accounts by capacity left, per round: O(log accounts)
per recipient, not a scan of every account for every recipient (1,200 accounts). A round
uses only as many of them as give each a run of its recipients (the ones with the most
capacity left; the others get the next passes' turns, having more left then): a send task
then carries many recipients over one SMTP session instead of one each, which is what
throughput with a pool of a thousand accounts needs (bench/send.py, 1,200 accounts: 567
msgs/s with runs of 5, 1,900 with runs of 50). A run is the campaign's recipients in the
round over ROUND_ACCOUNTS, at least MIN_RUN and at most SEND_GROUP_SIZE (one send task),
and never more than the account's own windows let it send within the horizon: a paced
account (6 a minute) is counted for what it can take, so a round uses enough of them
instead of offering each rows the limiter would refuse.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from rotator.selection import Candidate

# A round gives each account it uses at least this many of a campaign's recipients ...
MIN_RUN = 5
# ... and, with more of them, spreads them over about this many accounts (runs grow up
# to a send task's SEND_GROUP_SIZE).
ROUND_ACCOUNTS = 10


@dataclass
class Due:
    id: int
    campaign_id: int
    email: str
    domain: str
    candidates: list[Candidate]
    client_id: int
    # Its next_attempt_at (epoch seconds): claimed up to the horizon early, it is placed no
    # sooner than that.
    not_before: float | None = None
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
    windows_of = _WindowCache(table)
    waiting = due
    while waiting:
        offers: list[tuple[Due, Account, list[Window]]] = []
        next_round: list[Due] = []
        pool.tentative.clear()
        dealers: dict[int, _Dealer] = {}
        per_campaign = Counter(item.campaign_id for item in waiting)
        for item in waiting:
            shared_block = _shared_block(blocked, item)
            if shared_block is not None:
                item.wait(shared_block)
                postponed.append(item)
                continue
            dealer = dealers.get(item.campaign_id)
            if dealer is None:
                dealer = dealers[item.campaign_id] = _Dealer(
                    item.candidates,
                    pool,
                    cursor,
                    per_campaign[item.campaign_id],
                    run_length(per_campaign[item.campaign_id], settings),
                    lambda account_id: windows_of.run_cap(
                        pool.accounts[account_id], settings.dispatch_horizon_seconds
                    ),
                )
            account = dealer.deal(item)
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
            windows = windows_of(account, item.domain, campaign.id, campaign.daily_cap)
            offers.append((item, account, windows))
        if not offers:
            postponed += next_round
            break
        jitter = settings.send_jitter_seconds
        decisions = limiter.reserve_many(
            [w for _, _, w in offers],
            horizon=settings.dispatch_horizon_seconds,
            jitter=[random.uniform(0, jitter) for _ in offers] if jitter else None,
            after=[_floor(item, now, settings) for item, _, _ in offers],
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
        cursor += 1
    # Only now, with this pass's reservations made, is "when does it free" meaningful.
    for item in postponed:
        for account_id in item.exhausted:
            item.wait(_frees_at(account_id, pool, limiter, settings))
    return assigned, postponed


def _floor(item: Due, now: datetime, settings: Settings) -> float:
    """How long after now a row claimed before its next_attempt_at may be placed: not
    before that moment, and never beyond the horizon (with none, it goes now, as a row due
    before the next tick always did)."""
    if item.not_before is None:
        return 0.0
    return min(max(item.not_before - now.timestamp(), 0.0), settings.dispatch_horizon_seconds)


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


class _Dealer:
    """One campaign's accounts for one round, in a heap by capacity left (most first; equals
    by a turn that starts at the cursor). Capacity is shared with other campaigns' dealers,
    so an entry is checked when it comes up and put back with its true capacity if stale."""

    def __init__(
        self,
        candidates: list[Candidate],
        pool: Pool,
        cursor: int,
        rows: int,
        run: int,
        run_cap: Callable[[int], int | None],
    ) -> None:
        """`rows`: the campaign's recipients in the round; `run`: how many of them each
        account takes at most (less when `run_cap` says so)."""
        self.pool = pool
        ids = sorted(c.account_id for c in candidates)
        offset = cursor % len(ids) if ids else 0
        self.heap: list[tuple[int, int, int]] = []
        self.later: set[int] = set()  # full only by this round's unanswered offers
        self.exhausted: set[int] = set()
        self.blocked: dict[int, float] = {}
        for position, account_id in enumerate(ids):
            self._place(account_id, (position - offset) % len(ids))
        self.heap = _enough_for(sorted(self.heap), rows, run, run_cap)  # sorted: still a heap

    def deal(self, item: Due) -> Account | None:
        """The best account this recipient has not tried yet; _LATER when the only ones
        left are full by this round's unanswered offers; None when there is none."""
        passed: list[tuple[int, int, int]] = []
        chosen: int | None = None
        while self.heap:
            entry = heapq.heappop(self.heap)
            capacity, turn, account_id = -entry[0], entry[1], entry[2]
            if capacity != self.pool.remaining[account_id] or account_id in self.pool.blocked_until:
                self._place(account_id, turn)  # stale: back with what it has now
                continue
            if account_id in item.tried:
                passed.append(entry)
                continue
            chosen = account_id
            # The caller takes one place: it comes back one lower, behind its equals.
            heapq.heappush(self.heap, (-(capacity - 1), turn, account_id))
            break
        for entry in passed:
            heapq.heappush(self.heap, entry)
        if chosen is not None:
            item.tried.add(chosen)
            return self.pool.accounts[chosen]
        for until in self.blocked.values():
            item.wait(until)
        item.exhausted |= self.exhausted - item.tried
        return _LATER if self.later - item.tried else None

    def _place(self, account_id: int, turn: int) -> None:
        if account_id in self.pool.blocked_until:
            self.blocked[account_id] = self.pool.blocked_until[account_id]
        elif self.pool.remaining[account_id] > 0:
            heapq.heappush(self.heap, (-self.pool.remaining[account_id], turn, account_id))
        elif self.pool.tentative[account_id] > 0:
            self.later.add(account_id)
        else:
            self.exhausted.add(account_id)


def run_length(rows: int, settings: Settings) -> int:
    """How many of a campaign's `rows` in a round each account it uses takes."""
    return max(MIN_RUN, min(-(-rows // ROUND_ACCOUNTS), settings.send_group_size))


def _enough_for(
    best_first: list[tuple[int, int, int]],
    rows: int,
    run: int,
    run_cap: Callable[[int], int | None],
) -> list[tuple[int, int, int]]:
    """The first accounts whose runs cover `rows`, each run cut to what the account can
    send within the horizon (at least one)."""
    covered = 0
    for used, (_, _, account_id) in enumerate(best_first):
        if covered >= rows:
            return best_first[:used]
        cap = run_cap(account_id)
        covered += run if cap is None else max(1, min(run, cap))
    return best_first


class _WindowCache:
    """Each account's windows and each client's recipient-domain windows, built once a
    pass rather than once per recipient."""

    def __init__(self, table: LimitTable) -> None:
        self.table = table
        self.accounts: dict[int, list[Window]] = {}
        self.domains: dict[tuple[int, str], list[Window]] = {}

    def __call__(
        self, account: Account, domain: str, campaign_id: int, daily_cap: int | None
    ) -> list[Window]:
        own = self.own(account)
        key = (account.client_id, domain)
        by_domain = self.domains.get(key)
        if by_domain is None:
            by_domain = self.domains[key] = self.table.recipient_domain_windows(*key)
        return own + by_domain + self.table.campaign_windows(campaign_id, daily_cap)

    def own(self, account: Account) -> list[Window]:
        windows = self.accounts.get(account.id)
        if windows is None:
            windows = self.accounts[account.id] = self.table.account_windows(account)
        return windows

    def run_cap(self, account: Account, horizon: float) -> int | None:
        """The most sends the account's own windows (its limits and its pace) allow within
        `horizon` seconds from now; None when it has none."""
        caps = [
            w.limit * (1 + int(horizon // w.seconds))
            for w in self.own(account)
            if w.scope is Scope.ACCOUNT
        ]
        return min(caps) if caps else None


def _frees_at(account_id: int, pool: Pool, limiter: Limiter, settings: Settings) -> float:
    if account_id not in pool.frees_at:
        window = account_day_window(pool.accounts[account_id], settings)
        pool.frees_at[account_id] = limiter.frees_at(window) or time.time() + 60
    return pool.frees_at[account_id]
