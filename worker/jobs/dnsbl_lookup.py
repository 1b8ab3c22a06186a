"""Blacklist lookups with pydnsbl: every target against every configured list at once,
through DNSBL_NAMESERVERS.

pydnsbl 1.1.7 takes no resolvers of its own: its checkers build an aiodns resolver from
timeout and tries only. The checkers here replace it with one built on the configured
resolvers (c-ares takes one UDP/TCP port for all of them, hence IP:PORT support with a
single port). pydnsbl counts NXDOMAIN as clean and any other resolver error (timeout,
refused, SERVFAIL, no data) as a failed provider: those are "unknown" here, never clean."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiodns
from pydnsbl import DNSBLDomainChecker, DNSBLIpChecker
from pydnsbl.checker import DNSBLResponse
from pydnsbl.providers import Provider

from app.services.blacklist import IP, Target
from app.settings import Settings
from rotator.dnsbl_answers import ListResult, TargetResult, combine, failed_lookup, read_answers
from rotator.nameservers import parse_nameservers

log = logging.getLogger(__name__)


class _AnswerProvider(Provider):  # type: ignore[misc]
    """A list whose "categories" are its raw answers, so the result keeps them."""

    def process_response(self, response: Any) -> set[str]:
        return {record.host for record in response or ()}


class _Recording:
    """Keeps each failed lookup's error text, which pydnsbl's result drops."""

    errors: dict[tuple[str, str], str]

    async def dnsbl_request(self, request: str, provider: Provider) -> DNSBLResponse:
        response: DNSBLResponse = await super().dnsbl_request(request, provider)  # type: ignore[misc]
        if response.error is not None:
            code, *text = response.error.args or ("?",)
            self.errors[(request, provider.host)] = " ".join(str(t) for t in text) or str(code)
        return response


class _IpChecker(_Recording, DNSBLIpChecker):  # type: ignore[misc]
    pass


class _DomainChecker(_Recording, DNSBLDomainChecker):  # type: ignore[misc]
    pass


def lookup_targets(targets: Sequence[Target], settings: Settings) -> dict[Target, TargetResult]:
    """Blocking: runs its own event loop (Celery workers have none)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_lookup_all(targets, settings, loop))
    finally:
        loop.close()


async def _lookup_all(
    targets: Sequence[Target], settings: Settings, loop: asyncio.AbstractEventLoop
) -> dict[Target, TargetResult]:
    ip_checker = _checker(_IpChecker, settings.dnsbl_ip_lists, settings, loop)
    domain_checker = _checker(_DomainChecker, settings.dnsbl_domain_lists, settings, loop)
    jobs = [_lookup_one(ip_checker if t.kind == IP else domain_checker, t) for t in targets]
    results = await asyncio.gather(*jobs)
    for checker in (ip_checker, domain_checker):
        await _close(checker._resolver)
        await _close(checker.replaced_resolver)
    return dict(zip(targets, results, strict=True))


async def _lookup_one(checker: Any, target: Target) -> TargetResult:
    lists = [p.host for p in checker.providers]
    if not lists:
        return combine({})
    try:
        result = await checker.check_async(target.value)
    except ValueError as exc:  # pydnsbl refuses a name it cannot query
        note = f"cannot be queried: {exc}"
        return combine({name: failed_lookup(name, note) for name in lists})
    failed = {p.host for p in result.failed_providers}
    per_list: dict[str, ListResult] = {}
    for name in lists:
        if name in failed:
            error = checker.errors.get((target.value, name), "no answer")
            per_list[name] = failed_lookup(name, error)
        else:
            per_list[name] = read_answers(name, result.detected_by.get(name, []))
    verdict = combine(per_list)
    log.info(
        "blacklist.lookup",
        extra={
            "target": target.value,
            "verdict": verdict.verdict.value,
            "lists": verdict.lists_hit,
        },
    )
    return verdict


def _checker(
    kind: type[Any], lists: Sequence[str], settings: Settings, loop: asyncio.AbstractEventLoop
) -> Any:
    providers = [_AnswerProvider(name) for name in lists]
    checker = kind(
        providers=providers,
        timeout=settings.dnsbl_timeout_seconds,
        tries=settings.dnsbl_tries,
        loop=loop,
    )
    checker.errors = {}
    checker.replaced_resolver = None
    nameservers = parse_nameservers(settings.dnsbl_nameservers)
    if nameservers:
        port = nameservers[0].port  # settings allow one port for all
        checker.replaced_resolver = checker._resolver
        checker._resolver = aiodns.DNSResolver(
            nameservers=[ns.address for ns in nameservers],
            loop=loop,
            timeout=settings.dnsbl_timeout_seconds,
            tries=settings.dnsbl_tries,
            udp_port=port,
            tcp_port=port,
        )
    return checker


async def _close(resolver: Any) -> None:
    close = getattr(resolver, "close", None)
    if close is not None:
        outcome = close()
        if asyncio.iscoroutine(outcome):
            await outcome
