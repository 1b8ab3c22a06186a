"""The DNS lookups of the sender-authentication check of one domain: checkdmarc for SPF and
DMARC, dnspython for DKIM, MX and PTR, all through one resolver built from
SENDER_AUTH_NAMESERVERS (else DNSBL_NAMESERVERS, else the system's), IP:PORT honoured.

A lookup that times out, or that the resolver refuses or fails (SERVFAIL), is a DNS error,
reported as "unknown"; NXDOMAIN and an empty answer are facts ("nothing published")."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import checkdmarc.dmarc
import checkdmarc.spf
import checkdmarc.utils
import dns.exception
import dns.nameserver
import dns.resolver
import dns.reversename

from app.settings import Settings
from rotator.nameservers import parse_nameservers
from rotator.sender_auth_rules import (
    Finding,
    judge_dkim,
    judge_dmarc,
    judge_mx,
    judge_ptr,
    judge_spf,
    required_spf,
)

log = logging.getLogger(__name__)

NOT_FOUND = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)
DNS_FAILURES = (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN)
# How checkdmarc words a lookup that failed (it reports errors as text).
FAILURE_WORDS = ("timed out", "lifetime expired", "servfail", "refused", "no nameservers")
PARALLEL_DOMAINS = 8


@dataclass(frozen=True)
class DomainPlan:
    """What the domain must provide for: its accounts' providers, own IPs and selectors."""

    domain: str
    providers: frozenset[str]
    own_ips: frozenset[str]
    selectors: tuple[str, ...]


@dataclass(frozen=True)
class DomainFindings:
    domain: str
    spf: Finding
    dkim: Finding
    dmarc: Finding
    mx: Finding
    ptr: Finding | None

    def items(self) -> dict[str, Finding]:
        found = {"spf": self.spf, "dkim": self.dkim, "dmarc": self.dmarc, "mx": self.mx}
        if self.ptr is not None:
            found["ptr"] = self.ptr
        return found


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    configured = settings.sender_auth_nameservers or settings.dnsbl_nameservers
    timeout = settings.sender_auth_timeout_seconds
    resolver = dns.resolver.Resolver(configure=not configured)
    if configured:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(ns.address, ns.port)
            for ns in parse_nameservers(configured)
        ]
    resolver.timeout = min(1.0, timeout)  # retry a lost UDP datagram within the lifetime
    resolver.lifetime = timeout
    return resolver


def check_domains(plans: Iterable[DomainPlan], settings: Settings) -> list[DomainFindings]:
    """Several domains at once (each lookup may wait SENDER_AUTH_TIMEOUT_SECONDS on a
    resolver that does not answer), in the plans' order."""
    # checkdmarc keeps answers in a process-wide cache: a daily check must see today's DNS.
    checkdmarc.utils.DNS_CACHE.clear()
    with ThreadPoolExecutor(max_workers=PARALLEL_DOMAINS) as pool:
        return list(pool.map(lambda plan: check_domain(plan, settings), plans))


def check_domain(plan: DomainPlan, settings: Settings) -> DomainFindings:
    resolver = make_resolver(settings)
    timeout = settings.sender_auth_timeout_seconds
    domain = plan.domain
    spf = _spf(domain, resolver, timeout)
    required = required_spf(plan.providers, plan.own_ips)
    findings = DomainFindings(
        domain=domain,
        spf=judge_spf(domain, spf, required),
        dkim=_dkim(domain, plan, resolver),
        dmarc=judge_dmarc(domain, _dmarc(domain, resolver, timeout)),
        mx=_mx(domain, resolver),
        ptr=judge_ptr({ip: _ptr(ip, resolver) for ip in sorted(plan.own_ips)}),
    )
    log.info(
        "sender_auth.checked",
        extra={"sending_domain": domain, **{k: f.status for k, f in findings.items().items()}},
    )
    return findings


def _failure(error: object) -> str | None:
    text = str(error or "")
    return text if any(word in text.lower() for word in FAILURE_WORDS) else None


def _probe(name: str, rdtype: str, resolver: dns.resolver.Resolver) -> tuple[list[Any], str | None]:
    """(answers, DNS error); nothing published is ([], None)."""
    try:
        return list(resolver.resolve(name, rdtype)), None
    except NOT_FOUND:
        return [], None
    except DNS_FAILURES as exc:
        return [], str(exc) or type(exc).__name__


def _spf(domain: str, resolver: dns.resolver.Resolver, timeout: float) -> dict[str, Any]:
    _, error = _probe(domain, "TXT", resolver)
    if error:
        return {"dns_error": error}
    result: dict[str, Any] = checkdmarc.spf.check_spf(
        domain, resolver=resolver, timeout=timeout, retries=0
    )
    if failure := _failure(result.get("error")):
        result["dns_error"] = failure
    _resolve_a_and_mx(result.get("parsed"), domain, resolver)
    return result


def _resolve_a_and_mx(
    parsed: Mapping[str, Any] | None, domain: str, resolver: dns.resolver.Resolver
) -> None:
    """Adds the addresses `a` and `mx` mechanisms stand for (checkdmarc counts them but
    does not resolve them), so coverage of own IPs can be judged."""
    if not parsed:
        return
    for mechanism in parsed.get("mechanisms", []):
        kind = mechanism.get("mechanism")
        if kind == "include":
            _resolve_a_and_mx(mechanism.get("parsed"), mechanism.get("value", domain), resolver)
        elif kind in ("a", "mx"):
            host = str(mechanism.get("value") or domain).split("/")[0]
            hosts = [host]
            if kind == "mx":
                answers, _ = _probe(host, "MX", resolver)
                hosts = [str(a.exchange).rstrip(".") for a in answers]
            mechanism["addresses"] = [
                str(a) for h in hosts for t in ("A", "AAAA") for a in _probe(h, t, resolver)[0]
            ]


def _dmarc(domain: str, resolver: dns.resolver.Resolver, timeout: float) -> dict[str, Any]:
    _, error = _probe(f"_dmarc.{domain}", "TXT", resolver)
    if error:
        return {"dns_error": error}
    result: dict[str, Any] = checkdmarc.dmarc.check_dmarc(
        domain, resolver=resolver, timeout=timeout
    )
    if failure := _failure(result.get("error")):
        result["dns_error"] = failure
    return result


def _dkim(domain: str, plan: DomainPlan, resolver: dns.resolver.Resolver) -> Finding:
    keys: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for selector in plan.selectors:
        answers, error = _probe(f"{selector}._domainkey.{domain}", "TXT", resolver)
        if error:
            errors[selector] = error
        texts = [b"".join(a.strings).decode(errors="replace") for a in answers]
        keys[selector] = next((t for t in texts if "p=" in t), None)
    return judge_dkim(domain, keys, errors, plan.providers)


def _mx(domain: str, resolver: dns.resolver.Resolver) -> Finding:
    answers, error = _probe(domain, "MX", resolver)
    hosts = [str(a.exchange).rstrip(".") for a in sorted(answers, key=lambda a: a.preference)]
    return judge_mx(domain, hosts, error)


def _ptr(ip: str, resolver: dns.resolver.Resolver) -> tuple[list[str], list[str], str | None]:
    answers, error = _probe(dns.reversename.from_address(ip).to_text(), "PTR", resolver)
    names = [str(a.target).rstrip(".") for a in answers]
    confirmed = []
    family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
    for name in names:
        forward, forward_error = _probe(name, family, resolver)
        error = error or forward_error
        if any(ipaddress.ip_address(str(a)) == ipaddress.ip_address(ip) for a in forward):
            confirmed.append(name)
    return names, confirmed, error


def plans_for(
    accounts: Iterable[Any], settings: Settings, own_ips_of: Any
) -> dict[str, DomainPlan]:
    """One plan per own sending domain (freemail domains are not ours to fix)."""
    grouped: dict[str, list[Any]] = {}
    for account in accounts:
        if not settings.is_freemail(account.sending_domain):
            grouped.setdefault(account.sending_domain, []).append(account)
    plans = {}
    for domain, mine in sorted(grouped.items()):
        selectors = list(settings.dkim_selectors)
        selectors += [a.dkim_selector for a in mine if a.dkim_selector]
        plans[domain] = DomainPlan(
            domain=domain,
            providers=frozenset(a.provider for a in mine),
            own_ips=frozenset(ip for a in mine for ip in own_ips_of(a)),
            selectors=tuple(dict.fromkeys(s.lower() for s in selectors)),
        )
    return plans
