"""The forecast's day-by-day simulation: pure data in, a schedule out (no database, no
Redis; app.services.forecast loads the state).

Each simulated day d is one calendar date in the campaign's time zone with `minutes[d]`
open sending minutes. On it the campaign sends

    min(accounts, recipient domains, campaign cap, client, system)

where each term is what that scope can still take that day: a daily limit less what is
already counted in its 24-hour window at the day's last open minute (day 0 only: on later
days yesterday's sends have left the window by then), and a per-minute limit times the
open minutes. Any account may send to any domain, so the greedy dispatcher reaches that
minimum (a recipient refused by one account is offered the next; one refused by its
domain waits for the next day). The sends are split over accounts the way the dispatcher
picks them (most capacity left first) and over domains oldest rows first, as it claims
them. Work per day is O(accounts + domains served), never per recipient."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

HORIZON_DAYS = 365


@dataclass(frozen=True)
class Cap:
    """A shared scope's limit: per day and per minute (None: no limit), and what its day
    window still counts at the end of day 0."""

    per_day: int | None = None
    per_minute: int | None = None
    used_day0: int = 0

    def room(self, day: int, minutes: int) -> float:
        room = float("inf")
        if self.per_day is not None:
            room = max(self.per_day - (self.used_day0 if day == 0 else 0), 0)
        if self.per_minute is not None:
            room = min(room, self.per_minute * minutes)
        return room


@dataclass(frozen=True)
class AccountInput:
    id: int
    name: str
    sending_key: str
    caps: tuple[int, ...]  # the daily cap on day 0, 1, ... (warm-up ramp); last repeats
    per_minute: int | None
    used_day0: int = 0
    # Others' share: the fraction of this account's day that other running campaigns of
    # the client take while they have recipients waiting (app.services.forecast).
    shared_with: tuple[tuple[int, float], ...] = ()  # (other campaign id, its weight)
    available_from: int = 0  # first day it sends (a pause that ends)

    def cap(self, day: int) -> int:
        return self.caps[min(day, len(self.caps) - 1)]


@dataclass(frozen=True)
class DomainInput:
    domain: str
    waiting: int
    per_day: int
    used_day0: int = 0
    freemail: bool = False
    available_from: int = 0  # first day it takes mail (a back-off it asked for ends)


@dataclass(frozen=True)
class Competitor:
    """Another running campaign of the same accounts: its waiting recipients and weight."""

    id: int
    waiting: int
    priority: int
    daily_cap: int | None = None


@dataclass(frozen=True)
class ForecastInput:
    start: date
    minutes: tuple[int, ...]  # open sending minutes per day, day 0 first
    accounts: tuple[AccountInput, ...]
    domains: tuple[DomainInput, ...]
    sending_domains: dict[str, Cap] = field(default_factory=dict)
    campaign: Cap = Cap()
    client: Cap = Cap()
    system: Cap = Cap()
    priority: int = 1
    competitors: tuple[Competitor, ...] = ()


@dataclass
class Binding:
    scope: str  # accounts | recipient_domain | campaign | client | system | window | none
    message: str
    key: str | None = None


@dataclass
class Day:
    index: int
    date: date
    sends: int
    binding: Binding
    by_account: dict[int, int]
    by_domain: dict[str, int]


@dataclass
class DomainPlan:
    domain: str
    waiting: int
    per_day: int
    freemail: bool
    finish_day: int | None = None
    days_sending: int = 0
    message: str = ""


@dataclass
class Forecast:
    total: int
    days: list[Day]
    domains: list[DomainPlan]
    finish_day: int | None  # index of the last sending day; None: beyond the horizon
    left_after_horizon: int


def simulate(data: ForecastInput, horizon: int = HORIZON_DAYS) -> Forecast:
    waiting = {d.domain: d.waiting for d in data.domains if d.waiting > 0}
    domains = {d.domain: d for d in data.domains}
    plans = {d.domain: DomainPlan(d.domain, d.waiting, d.per_day, d.freemail) for d in data.domains}
    others = {c.id: c.waiting for c in data.competitors}
    days: list[Day] = []
    total = sum(waiting.values())
    left = total
    finish: int | None = 0 if total == 0 else None
    for day in range(min(horizon, len(data.minutes))):
        if left == 0:
            break
        minutes = data.minutes[day]
        if minutes <= 0:
            continue
        result = _one_day(data, day, minutes, waiting, domains, others)
        if result is None:
            continue
        days.append(result)
        for domain, sent in result.by_domain.items():
            waiting[domain] -= sent
            plans[domain].days_sending += 1
            if waiting[domain] == 0:
                plans[domain].finish_day = day
                del waiting[domain]  # only domains still waiting are looked at again
        left -= result.sends
        if left == 0:
            finish = day
    for plan in plans.values():
        plan.message = _domain_message(plan, days, finish)
    return Forecast(total, days, list(plans.values()), finish, left)


def _one_day(
    data: ForecastInput,
    day: int,
    minutes: int,
    waiting: dict[str, int],
    domains: dict[str, DomainInput],
    others: dict[int, int],
) -> Day | None:
    account_room = _account_room(data, day, minutes, others)
    by_group: dict[str, float] = {}
    for account in data.accounts:
        by_group[account.sending_key] = (
            by_group.get(account.sending_key, 0) + account_room[account.id]
        )
    group_room = {
        key: min(room, data.sending_domains.get(key, Cap()).room(day, minutes))
        for key, room in by_group.items()
    }
    terms: list[tuple[float, Binding]] = [
        (sum(group_room.values()), _accounts_binding(data, day, group_room, by_group)),
        (data.campaign.room(day, minutes), Binding("campaign", "the campaign's daily cap")),
        (data.client.room(day, minutes), Binding("client", "the client's limit")),
        (data.system.room(day, minutes), Binding("system", "the system limit")),
    ]
    other_room, binding = min(terms, key=lambda t: t[0])
    by_domain, capped = _serve_domains(int(other_room), day, waiting, domains)
    sends = sum(by_domain.values())
    if sends < other_room:
        binding = _domains_binding(capped, waiting, domains)
    if sends <= 0:
        return Day(day, _date(data, day), 0, binding, {}, {}) if day == 0 else None
    by_account = _split_accounts(sends, data, day, account_room, group_room)
    return Day(day, _date(data, day), sends, binding, by_account, by_domain)


def _serve_domains(
    room: int, day: int, waiting: dict[str, int], domains: dict[str, DomainInput]
) -> tuple[dict[str, int], list[str]]:
    """The day's sends over the recipient domains, oldest rows first as the dispatcher
    claims them (`waiting` is in the order of each domain's first recipient): each domain
    as many as it waits for and its limit allows, until `room` is used up. Also the
    domains whose limit held some back. Touches only the domains served, so a day costs
    its sends, not the whole list."""
    given: dict[str, int] = {}
    capped: list[str] = []
    left = room
    for name, count in waiting.items():
        if left <= 0:
            break
        domain = domains[name]
        if day < domain.available_from:
            continue
        cap = _domain_cap(domain, day)
        take = min(count, cap, left)
        if cap < count:
            capped.append(name)
        if take > 0:
            given[name] = take
            left -= take
    return given, capped


def _account_room(
    data: ForecastInput, day: int, minutes: int, others: dict[int, int]
) -> dict[int, float]:
    """What each account can give this campaign today: its cap less what is counted, less
    what other running campaigns take of it (their weighted share while they still have
    recipients waiting); a competitor's take also shortens its waiting count."""
    weights = {c.id: c.priority for c in data.competitors}
    caps = {c.id: c.daily_cap for c in data.competitors}
    room: dict[int, float] = {}
    taken_by: dict[int, float] = {}
    for account in data.accounts:
        if day < account.available_from:
            room[account.id] = 0
            continue
        cap = max(account.cap(day) - (account.used_day0 if day == 0 else 0), 0)
        full = min(cap, account.per_minute * minutes if account.per_minute else cap)
        sharing = [cid for cid, _ in account.shared_with if others.get(cid, 0) > 0]
        weight_sum = data.priority + sum(weights[cid] for cid in sharing)
        mine: float = full
        for cid in sharing:
            share = full * weights[cid] / weight_sum
            limit = caps[cid]
            want = others[cid] - taken_by.get(cid, 0)
            if limit is not None:
                want = min(want, limit - taken_by.get(cid, 0))
            take = max(min(share, want), 0)
            taken_by[cid] = taken_by.get(cid, 0) + take
            mine -= take
        room[account.id] = max(mine, 0)
    for cid, took in taken_by.items():
        others[cid] = max(others[cid] - int(took), 0)
    return room


def _domain_cap(domain: DomainInput, day: int) -> int:
    return max(domain.per_day - (domain.used_day0 if day == 0 else 0), 0)


def _accounts_binding(
    data: ForecastInput, day: int, group_room: dict[str, float], by_group: dict[str, float]
) -> Binding:
    if not data.accounts:
        return Binding("accounts", "no account can send this campaign")
    tight = [key for key, room in group_room.items() if room < by_group[key]]
    if tight:
        return Binding("sending_domain", f"the sending-domain limit of {tight[0]}", tight[0])
    if any(a.cap(day) < a.cap(day + 1) for a in data.accounts if a.available_from <= day):
        return Binding("accounts", "the accounts' warm-up caps")
    return Binding("accounts", "the accounts' daily caps")


def _domains_binding(
    capped: list[str], waiting: dict[str, int], domains: dict[str, DomainInput]
) -> Binding:
    if not capped:
        return Binding("none", "recipients: everything waiting goes")
    biggest = max(capped, key=lambda name: waiting[name])
    limit = domains[biggest].per_day
    return Binding(
        "recipient_domain",
        f"{biggest} is limited to {limit} a day"
        + (f" (and {len(capped) - 1} more domains)" if len(capped) > 1 else ""),
        biggest,
    )


def _split_accounts(
    total: int,
    data: ForecastInput,
    day: int,
    room: dict[int, float],
    group_room: dict[str, float],
) -> dict[int, int]:
    """The dispatcher's choice, summed over the day: each send goes to the account with
    the most of its day cap left, so what is left evens out (a water level), no account
    past its room. A sending domain that cannot take its accounts' share is filled to its
    room alone and the rest goes round the other accounts again."""
    left_cap = {a.id: a.cap(day) - (a.used_day0 if day == 0 else 0) for a in data.accounts}
    limit = {a.id: int(room[a.id]) for a in data.accounts if room[a.id] >= 1}
    group_of = {a.id: a.sending_key for a in data.accounts}
    fixed: dict[int, int] = {}
    free = dict(limit)
    remaining = total
    for _ in range(len(group_room) + 1):
        given = _water_fill(remaining, {aid: left_cap[aid] for aid in free}, free)
        over = {
            key
            for key in {group_of[aid] for aid in given}
            if sum(n for aid, n in given.items() if group_of[aid] == key) > int(group_room[key])
        }
        if not over:
            fixed.update(given)
            break
        for key in over:
            members = {aid: n for aid, n in free.items() if group_of[aid] == key}
            part = _water_fill(int(group_room[key]), {a: left_cap[a] for a in members}, members)
            fixed.update(part)
            remaining -= sum(part.values())
            for aid in members:
                free.pop(aid)
    return {aid: n for aid, n in fixed.items() if n}


def _water_fill(total: int, level: dict[int, int], limit: dict[int, int]) -> dict[int, int]:
    """`total` units, each to the key with the highest `level` less what it was given, at
    most `limit` each: found by bisecting the final level, O(keys x log(level range))."""
    if not limit or total <= 0:
        return {}

    def taken_above(mark: int) -> int:
        return sum(min(limit[k], max(level[k] - mark, 0)) for k in limit)

    low, high = min(level.values()) - max(limit.values()) - 1, max(level.values())
    if taken_above(low) <= total:
        return {k: min(limit[k], max(level[k] - low, 0)) for k in limit}
    # Invariant: taken_above(low) > total >= taken_above(high).
    while high - low > 1:
        mid = (low + high) // 2
        if taken_above(mid) > total:
            low = mid
        else:
            high = mid
    given = {k: min(limit[k], max(level[k] - high, 0)) for k in limit}
    extra = total - sum(given.values())
    # The units between the two levels: one each to the keys that can still take one.
    for k in sorted(limit):
        if extra == 0:
            break
        if min(limit[k], max(level[k] - low, 0)) > given[k]:
            given[k] += 1
            extra -= 1
    return given


def _date(data: ForecastInput, day: int) -> date:
    return date.fromordinal(data.start.toordinal() + day)


def _domain_message(plan: DomainPlan, days: list[Day], finish: int | None) -> str:
    if plan.waiting == 0:
        return f"{plan.domain}: nothing waiting"
    if plan.finish_day is None:
        return (
            f"{plan.domain} is limited to {plan.per_day} a day: its {plan.waiting} "
            "recipients are not all sent within the forecast's horizon"
        )
    needs = -(-plan.waiting // plan.per_day) if plan.per_day else None
    if needs is not None and needs > 1 and plan.days_sending >= needs:
        return (
            f"{plan.domain} is limited to {plan.per_day} a day: its {plan.waiting} "
            f"recipients take {plan.days_sending} sending days"
        )
    return (
        f"{plan.domain}: {plan.waiting} recipients over {plan.days_sending} sending "
        f"day{'s' if plan.days_sending != 1 else ''}"
    )
