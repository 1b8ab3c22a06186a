"""What a DNSBL's answer means, and how one target's per-list verdicts add up.

A list answers a listed name with an A record in 127.0.0.0/8 (RFC 5782) and a clean one
with NXDOMAIN. Some answers are errors dressed as listings: Spamhaus answers
127.255.255.252/254/255 when it refuses the query (a typo in the zone, a public or open
resolver, too many queries), SURBL 127.0.0.1 when it blocks the resolver, and a resolver
that rewrites NXDOMAIN answers with an address outside 127/8. None of those is a listing
and none is "clean": the verdict is unknown, with a note saying why."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
REFUSAL_NET = ipaddress.ip_network("127.255.255.0/24")
OWN_RESOLVER = (
    "use a resolver of your own (DNSBL_NAMESERVERS: a local unbound or bind that queries "
    "the lists directly), not a public or ISP resolver"
)
REFUSALS = {
    "127.255.255.252": "the list name is misspelt (127.255.255.252)",
    "127.255.255.254": "the query came through a public or open resolver (127.255.255.254)",
    "127.255.255.255": "too many queries from this resolver (127.255.255.255)",
}


class Verdict(StrEnum):
    CLEAN = "clean"
    LISTED = "listed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ListResult:
    verdict: Verdict
    answers: tuple[str, ...] = ()
    note: str | None = None

    def as_json(self) -> dict[str, object]:
        return {"status": self.verdict.value, "answers": list(self.answers), "note": self.note}


@dataclass(frozen=True)
class TargetResult:
    verdict: Verdict
    lists_hit: tuple[str, ...]
    per_list: Mapping[str, ListResult] = field(default_factory=dict)
    note: str | None = None


def read_answers(list_name: str, answers: Sequence[str]) -> ListResult:
    """One list's A answers for one query; no answer (NXDOMAIN) is clean."""
    if not answers:
        return ListResult(Verdict.CLEAN)
    found = tuple(sorted(answers))
    for answer in found:
        address = ipaddress.ip_address(answer)
        if address in REFUSAL_NET:
            why = REFUSALS.get(answer, f"the list refused the query ({answer})")
            return ListResult(Verdict.UNKNOWN, found, f"{list_name} refused: {why}; {OWN_RESOLVER}")
        if address not in LOOPBACK:
            return ListResult(
                Verdict.UNKNOWN,
                found,
                f"{list_name} answered {answer}, which is not a DNSBL answer (the resolver "
                f"rewrites NXDOMAIN?); {OWN_RESOLVER}",
            )
        if answer == "127.0.0.1":
            return ListResult(
                Verdict.UNKNOWN, found, f"{list_name} blocked the query (127.0.0.1); {OWN_RESOLVER}"
            )
    return ListResult(Verdict.LISTED, found)


def failed_lookup(list_name: str, error: str) -> ListResult:
    """A timeout, refusal or SERVFAIL: nothing is known about that list."""
    return ListResult(Verdict.UNKNOWN, note=f"{list_name} did not answer: {error}")


def combine(per_list: Mapping[str, ListResult]) -> TargetResult:
    """Listed when any list lists it; else unknown when any list could not tell; else
    clean."""
    hit = tuple(sorted(name for name, r in per_list.items() if r.verdict == Verdict.LISTED))
    notes = [r.note for _, r in sorted(per_list.items()) if r.note]
    if hit:
        verdict = Verdict.LISTED
    elif any(r.verdict == Verdict.UNKNOWN for r in per_list.values()):
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.CLEAN
    return TargetResult(verdict, hit, dict(per_list), "; ".join(notes) or None)


# What to do about a listing, per list (by the end of its zone name).
REMOVAL = {
    "spamhaus.org": "look it up at https://check.spamhaus.org/ and follow the removal steps "
    "there once the cause is fixed",
    "spamcop.net": "SpamCop listings expire by themselves about 24 h after the reports stop: "
    "find and stop what sends the reported mail (https://www.spamcop.net/bl.shtml)",
    "barracudacentral.org": "request removal at "
    "https://www.barracudacentral.org/rbl/removal-request",
    "surbl.org": "look it up and request removal at https://www.surbl.org/surbl-analysis",
}
DEFAULT_REMOVAL = "look the listing up on the list's website and request removal"


def removal_advice(list_name: str) -> str:
    for suffix, advice in REMOVAL.items():
        if list_name == suffix or list_name.endswith("." + suffix):
            return advice
    return DEFAULT_REMOVAL
