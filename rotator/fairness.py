"""Sharing the dispatcher's capacity fairly: between clients first, then between each
client's campaigns, so that a million-row campaign never starves a ten-row one.

`quotas` splits one batch's row budget; `interleave` orders the claimed rows so that, when
a shared limit (the system's) runs out part-way through the batch, what did go is spread
over clients and campaigns round-robin rather than given to whoever was claimed first."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def quotas(
    campaigns_by_client: Mapping[int, Sequence[int]],
    budget: int,
    *,
    rotation: int = 0,
    priority: Mapping[int, int] | None = None,
) -> dict[int, int]:
    """How many due rows each campaign may claim out of `budget`: an equal share per
    client, split between its campaigns in proportion to their `priority` (1 when not
    given), remainders handed out one by one. When there are more clients (or campaigns)
    than rows, `rotation` (the tick) picks who is served this time, so everyone is served
    in turn. The sum never exceeds `budget`."""
    if budget <= 0:
        return {}
    weight = priority or {}
    clients = _rotated(sorted(c for c, ids in campaigns_by_client.items() if ids), rotation)
    result: dict[int, int] = {}
    for client_id, share in zip(clients, _split(budget, len(clients)), strict=True):
        campaigns = _rotated(sorted(campaigns_by_client[client_id]), rotation)
        weights = [max(weight.get(c, 1), 1) for c in campaigns]
        for campaign_id, quota in zip(campaigns, _split_weighted(share, weights), strict=True):
            if quota:
                result[campaign_id] = quota
    return result


def interleave(
    items: Sequence[T],
    client_of: Callable[[T], Hashable],
    campaign_of: Callable[[T], Hashable],
    priority: Callable[[T], int] | None = None,
) -> list[T]:
    """Round-robin over clients, each client's turn round-robin over its campaigns (a
    campaign of priority p takes p places per round); the order within one campaign is
    kept."""
    by_client: dict[Hashable, dict[Hashable, list[T]]] = {}
    for item in items:
        by_client.setdefault(client_of(item), {}).setdefault(campaign_of(item), []).append(item)
    per_client = []
    for campaigns in by_client.values():
        queues = list(campaigns.values())
        steps = [max(priority(q[0]), 1) if priority else 1 for q in queues]
        per_client.append(_round_robin(queues, steps))
    return _round_robin(per_client, [1] * len(per_client))


def _round_robin(queues: list[list[T]], steps: list[int]) -> list[T]:
    """Each round takes `steps[i]` items from queue i, until all are empty."""
    result: list[T] = []
    positions = [0] * len(queues)
    while True:
        took = False
        for i, queue in enumerate(queues):
            start = positions[i]
            if start < len(queue):
                result.extend(queue[start : start + steps[i]])
                positions[i] = start + steps[i]
                took = True
        if not took:
            return result


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` shares differing by at most one, the larger ones first."""
    if parts == 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _split_weighted(total: int, weights: list[int]) -> list[int]:
    """`total` in shares proportional to `weights` (largest remainders first, ties in
    order); equal weights give what _split gives."""
    whole = sum(weights)
    if whole == 0:
        return []
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:left]:
        shares[i] += 1
    return shares


def _rotated(values: list[int], rotation: int) -> list[int]:
    if not values:
        return values
    start = rotation % len(values)
    return values[start:] + values[:start]
