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
    campaigns_by_client: Mapping[int, Sequence[int]], budget: int, *, rotation: int = 0
) -> dict[int, int]:
    """How many due rows each campaign may claim out of `budget`: an equal share per
    client, split equally between its campaigns, remainders handed out one by one. When
    there are more clients (or campaigns) than rows, `rotation` (the tick) picks who is
    served this time, so everyone is served in turn. The sum never exceeds `budget`."""
    if budget <= 0:
        return {}
    clients = _rotated(sorted(c for c, ids in campaigns_by_client.items() if ids), rotation)
    result: dict[int, int] = {}
    for client_id, share in zip(clients, _split(budget, len(clients)), strict=True):
        campaigns = _rotated(sorted(campaigns_by_client[client_id]), rotation)
        for campaign_id, quota in zip(campaigns, _split(share, len(campaigns)), strict=True):
            if quota:
                result[campaign_id] = quota
    return result


def interleave(
    items: Sequence[T], client_of: Callable[[T], Hashable], campaign_of: Callable[[T], Hashable]
) -> list[T]:
    """Round-robin over clients, each client's turn round-robin over its campaigns; the
    order within one campaign is kept."""
    by_client: dict[Hashable, dict[Hashable, list[T]]] = {}
    for item in items:
        by_client.setdefault(client_of(item), {}).setdefault(campaign_of(item), []).append(item)
    per_client = [_round_robin(list(campaigns.values())) for campaigns in by_client.values()]
    return _round_robin(per_client)


def _round_robin(queues: list[list[T]]) -> list[T]:
    result: list[T] = []
    depth = max((len(q) for q in queues), default=0)
    for index in range(depth):
        result.extend(q[index] for q in queues if index < len(q))
    return result


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` shares differing by at most one, the larger ones first."""
    if parts == 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _rotated(values: list[int], rotation: int) -> list[int]:
    if not values:
        return values
    start = rotation % len(values)
    return values[start:] + values[:start]
