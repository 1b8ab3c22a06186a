"""What a sending domain's DNS must say for its providers, judged from what the lookups
found, each verdict with a fix in plain words (the record to publish).

No I/O here: worker.jobs.domain_checks does the lookups (checkdmarc for SPF and DMARC,
dnspython for DKIM, MX and PTR) and hands the findings in."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 section 4.6.4

# The SPF include each hosted provider documents for its sending servers.
SPF_INCLUDES = {
    "gmail": "_spf.google.com",
    "sendgrid": "sendgrid.net",
    "smtp2go": "spf.smtp2go.com",
}
PROVIDER_NAMES = {
    "gmail": "Google Workspace",
    "sendgrid": "SendGrid",
    "smtp2go": "SMTP2GO",
    "postfix": "your Postfix relays",
}
DKIM_HOWTO = {
    "gmail": "Google Workspace: Admin console > Apps > Google Workspace > Gmail > "
    "Authenticate email: generate a key, publish it as the TXT record "
    "google._domainkey.{domain} and press Start authentication",
    "sendgrid": "SendGrid: Settings > Sender Authentication > Authenticate your domain, then "
    "publish the CNAME records s1._domainkey.{domain} and s2._domainkey.{domain} it shows",
    "smtp2go": "SMTP2GO: Sending > Verified Senders > add {domain} and publish the CNAME "
    "records it shows (s<number>._domainkey.{domain}); put that selector in the account's "
    "dkim_selector",
}
DKIM_OWN = (
    "sign with OpenDKIM (or your relay's DKIM signer) and publish its public key as the TXT "
    'record <selector>._domainkey.{domain} "v=DKIM1; k=rsa; p=<public key>"; add the '
    "selector to DKIM_SELECTORS or to the account's dkim_selector"
)


@dataclass(frozen=True)
class Finding:
    status: str  # pass / fail / unknown
    found: str | None = None  # the record(s) as published
    problem: str | None = None
    fix: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["details"] = dict(self.details)
        return data


def required_spf(providers: Iterable[str], ips: Iterable[str]) -> list[str]:
    """The mechanisms the domain's SPF must cover: each hosted provider's include and
    each own IP (Postfix relays, declared sending IPs)."""
    wanted = sorted({f"include:{SPF_INCLUDES[p]}" for p in providers if p in SPF_INCLUDES})
    for ip in sorted(set(ips), key=lambda v: ipaddress.ip_address(v).packed):
        wanted.append(f"ip{ipaddress.ip_address(ip).version}:{ip}")
    return wanted


def _walk(parsed: Mapping[str, Any] | None) -> tuple[set[str], list[str]]:
    """Every include/redirect domain and every ip4/ip6 range in an SPF tree as checkdmarc
    parses it (nested includes included)."""
    includes: set[str] = set()
    networks: list[str] = []
    if not parsed:
        return includes, networks
    for mechanism in parsed.get("mechanisms", []):
        kind, value = mechanism.get("mechanism"), str(mechanism.get("value", ""))
        if kind == "include":
            includes.add(value.lower())
            inner = _walk(mechanism.get("parsed"))
            includes |= inner[0]
            networks += inner[1]
        elif kind in ("ip4", "ip6"):
            networks.append(value)
        elif kind in ("a", "mx"):
            networks.extend(mechanism.get("addresses", []))
    redirect = parsed.get("redirect")
    if isinstance(redirect, Mapping):
        includes.add(str(redirect.get("domain", "")).lower())
        inner = _walk(redirect.get("parsed"))
        includes |= inner[0]
        networks += inner[1]
    return includes, networks


def missing_from_spf(parsed: Mapping[str, Any] | None, required: Sequence[str]) -> list[str]:
    includes, networks = _walk(parsed)
    ranges = []
    for net in networks:
        try:
            ranges.append(ipaddress.ip_network(net, strict=False))
        except ValueError:
            continue
    missing = []
    for mechanism in required:
        kind, _, value = mechanism.partition(":")
        if kind == "include":
            covered = value in includes
        else:
            address = ipaddress.ip_address(value)
            covered = any(address.version == r.version and address in r for r in ranges)
        if not covered:
            missing.append(mechanism)
    return missing


def spf_record_with(record: str | None, mechanisms: Sequence[str]) -> str:
    """The record to publish: the current one with the missing mechanisms before its
    `all`, or a new one."""
    if not record:
        return " ".join(["v=spf1", *mechanisms, "~all"])
    terms = record.split()
    at = next((i for i, t in enumerate(terms) if t.lstrip("+-~?").lower() == "all"), len(terms))
    return " ".join(terms[:at] + [m for m in mechanisms if m not in terms] + terms[at:])


def judge_spf(domain: str, result: Mapping[str, Any], required: Sequence[str]) -> Finding:
    """`result`: checkdmarc.spf.check_spf's answer (with `dns_error` when a lookup failed)."""
    record = result.get("record")
    lookups = result.get("dns_lookups")
    details = {"required": list(required), "dns_lookups": lookups}
    if result.get("dns_error"):
        return Finding(UNKNOWN, record, f"DNS did not answer: {result['dns_error']}", None, details)
    if not record:
        return Finding(
            FAIL,
            None,
            f"{domain} publishes no SPF record ({result.get('error') or 'none found'})",
            f'publish the TXT record {domain} "{spf_record_with(None, required)}"',
            details,
        )
    if lookups is not None and lookups > SPF_LOOKUP_LIMIT:
        return Finding(
            FAIL,
            record,
            f"the SPF record needs {lookups} DNS lookups, more than the {SPF_LOOKUP_LIMIT} "
            "receivers evaluate: it fails (permerror) everywhere",
            "remove the include: mechanisms of services you no longer send through, or "
            "replace them with their ip4:/ip6: ranges; what Sendfleet needs is only "
            f'"{spf_record_with(None, required)}"',
            details,
        )
    missing = missing_from_spf(result.get("parsed"), required)
    if missing:
        return Finding(
            FAIL,
            record,
            f"the SPF record does not cover {', '.join(missing)}",
            f'replace the TXT record of {domain} with "{spf_record_with(record, missing)}"',
            {**details, "missing": missing},
        )
    if result.get("error"):
        return Finding(
            FAIL, record, f"the SPF record is invalid: {result['error']}",
            f'publish "{spf_record_with(None, required)}" instead', details,
        )  # fmt: skip
    return Finding(PASS, record, None, None, details)


def judge_dmarc(domain: str, result: Mapping[str, Any]) -> Finding:
    record = result.get("record")
    suggestion = (
        f'publish the TXT record _dmarc.{domain} "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"'
    )
    if result.get("dns_error"):
        return Finding(UNKNOWN, record, f"DNS did not answer: {result['dns_error']}")
    if not record:
        problem = f"{domain} publishes no DMARC record ({result.get('error') or 'none found'})"
        return Finding(FAIL, None, problem, suggestion)
    tags = result.get("tags", {})
    policy = tags.get("p", {}).get("value")
    rua = [str(u.get("address")) for u in tags.get("rua", {}).get("value", []) or []]
    details = {"policy": policy, "rua": rua}
    if result.get("error"):
        return Finding(FAIL, record, f"the DMARC record is invalid: {result['error']}",
                       suggestion, details)  # fmt: skip
    advice = []
    if not rua:
        advice.append(f"add rua=mailto:dmarc@{domain} to receive the aggregate reports")
    if policy == "none":
        advice.append("move to p=quarantine once the reports show only your own mail passing")
    return Finding(PASS, record, None, "; ".join(advice) or None, details)


def judge_dkim(
    domain: str, keys: Mapping[str, str | None], errors: Mapping[str, str], providers: Iterable[str]
) -> Finding:
    """`keys`: per selector the TXT record found (None: none); `errors`: selectors whose
    lookup failed."""
    valid = {s: k for s, k in keys.items() if k and _has_key(k)}
    details = {"selectors": sorted(keys), "found": sorted(valid)}
    if valid:
        found = "; ".join(f"{s}._domainkey.{domain}" for s in sorted(valid))
        return Finding(PASS, found, None, None, details)
    if errors:
        names = ", ".join(sorted(errors))
        return Finding(UNKNOWN, None, f"DNS did not answer for selector(s) {names}", None, details)
    revoked = sorted(s for s, k in keys.items() if k)
    problem = (
        f"the DKIM record of selector(s) {', '.join(revoked)} has no public key (p= empty: revoked)"
        if revoked
        else f"no DKIM key at any selector checked ({', '.join(sorted(keys)) or 'none'})"
    )
    howto = [DKIM_HOWTO.get(p, DKIM_OWN).format(domain=domain) for p in sorted(set(providers))]
    return Finding(FAIL, None, problem, "; ".join(howto or [DKIM_OWN.format(domain=domain)]),
                   details)  # fmt: skip


def _has_key(record: str) -> bool:
    tags = dict(part.strip().split("=", 1) for part in record.split(";") if "=" in part)
    return bool(tags.get("p", "").strip())


def judge_mx(domain: str, hosts: Sequence[str], error: str | None) -> Finding:
    if error:
        return Finding(UNKNOWN, None, f"DNS did not answer: {error}")
    fix = (
        f"publish an MX record for {domain} pointing at the mailbox provider that receives "
        "its replies and bounces (Google Workspace: smtp.google.com)"
    )
    if not hosts:
        return Finding(FAIL, None, f"{domain} has no MX record: replies and bounces are lost",
                       fix)  # fmt: skip
    if [h.rstrip(".") for h in hosts] == [""]:
        return Finding(FAIL, ".", f"{domain} publishes a null MX (RFC 7505): it receives no "
                       "mail, and receivers refuse mail from it", fix)  # fmt: skip
    return Finding(PASS, ", ".join(hosts))


def judge_ptr(ips: Mapping[str, tuple[list[str], list[str], str | None]]) -> Finding | None:
    """Per own IP: (PTR names, names whose A/AAAA include the IP, lookup error). None
    when the domain sends from no own IP."""
    if not ips:
        return None
    details = {ip: {"ptr": names, "confirmed": ok} for ip, (names, ok, _) in ips.items()}
    errors = {ip: err for ip, (_, _, err) in ips.items() if err}
    bad = [ip for ip, (_, ok, err) in ips.items() if not ok and not err]
    found = "; ".join(f"{ip} -> {', '.join(n) or 'none'}" for ip, (n, _, _) in sorted(ips.items()))
    if bad:
        fixes = [
            f"ask the provider of {ip} to set its PTR to the relay's name (e.g. mail.<your "
            f"domain>) and publish an A record of that name pointing at {ip}"
            for ip in bad
        ]
        return Finding(FAIL, found, f"no forward-confirmed PTR for {', '.join(bad)}",
                       "; ".join(fixes), details)  # fmt: skip
    if errors:
        return Finding(UNKNOWN, found, f"DNS did not answer for {', '.join(sorted(errors))}",
                       None, details)  # fmt: skip
    return Finding(PASS, found, None, None, details)
