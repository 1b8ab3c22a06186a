"""Which accounts to try, in order, for one recipient. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from rotator.providers import REGISTRY


@dataclass(frozen=True)
class Candidate:
    account_id: int
    provider: str
    sending_domain: str
    remaining_today: int


def order_candidates(
    candidates: Sequence[Candidate], *, cursor: int, prefer_provider: str | None = None
) -> list[Candidate]:
    """Accounts with capacity left, best first.

    Preferred provider first (the recipient's domain is hosted there), then most
    capacity left today; accounts tied on both are rotated by `cursor`, which the
    caller advances per recipient, so equal accounts take turns.
    """

    def rank(c: Candidate) -> tuple[bool, int]:
        return (prefer_provider is None or c.provider != prefer_provider, -c.remaining_today)

    usable = sorted(
        (c for c in candidates if c.remaining_today > 0),
        key=lambda c: (*rank(c), c.account_id),
    )
    ordered: list[Candidate] = []
    for _, group in groupby(usable, key=rank):
        tied = list(group)
        turn = cursor % len(tied)
        ordered.extend(tied[turn:] + tied[:turn])
    return ordered


def provider_for_mx(mx_hosts: Sequence[str]) -> str | None:
    """The provider hosting a domain, from its MX hosts in preference order."""
    for host in mx_hosts:
        name = host.strip().rstrip(".").lower()
        for preset in REGISTRY.values():
            for suffix in preset.mx_suffixes:
                if name == suffix or name.endswith("." + suffix):
                    return preset.name
    return None
