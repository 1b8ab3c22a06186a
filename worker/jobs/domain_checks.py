"""The daily sender-authentication check (task `sendfleet.sender_auth_check`).

For every own sending domain: SPF present, covering each provider of its accounts
(Google, SendGrid, SMTP2GO includes; Postfix relays' and declared IPs) and under the
10-lookup limit; a DKIM key at DKIM_SELECTORS or the accounts' own selectors; DMARC with
its policy and rua; MX; a forward-confirmed PTR for own IPs. Lookups run outside any
transaction; one row per domain is recorded in sender_auth_checks. A domain whose SPF,
DKIM or DMARC turns to fail is alerted, once per client with accounts on it; the warm-up
ramp reads the verdicts through app.services.sender_domains.domain_auth_passing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, AccountStatus, SenderAuthCheck
from app.services.blacklist import IP, account_targets
from app.services.sender_domains import latest_domain_checks
from app.settings import Settings
from rotator.sender_auth_rules import FAIL
from worker.jobs import alerts
from worker.jobs.domain_dns import DomainFindings, check_domains, plans_for

log = logging.getLogger(__name__)

ALERTED_ITEMS = ("spf", "dkim", "dmarc")


@dataclass
class SenderAuthRun:
    checked: list[str] = field(default_factory=list)
    failing: dict[str, list[str]] = field(default_factory=dict)
    alerts: list[tuple[str, str, int]] = field(default_factory=list)

    def log_fields(self) -> dict[str, Any]:
        return {"checked": len(self.checked), "failing": self.failing}


def run_sender_auth_check(*, now: datetime | None = None) -> SenderAuthRun:
    settings: Settings = current_app.extensions["settings"]
    now = now or datetime.now(UTC)
    with unit_of_work() as session:
        accounts = _sending_accounts(session)
        plans = plans_for(accounts, settings, lambda a: _own_ips(a, settings))
        clients = {
            d: sorted({a.client_id for a in accounts if a.sending_domain == d}) for d in plans
        }
    findings = check_domains(plans.values(), settings)
    with unit_of_work() as session:
        run = record_findings(session, findings, clients, now=now)
    for key, text, client_id in run.alerts:
        alerts.notify(key, text, client_id=client_id)
    log.info("sender_auth.run", extra=run.log_fields())
    return run


def _sending_accounts(session: Session) -> list[Account]:
    return list(
        session.scalars(
            select(Account)
            .where(Account.status != AccountStatus.DISABLED.value)
            .order_by(Account.id)
        )
    )


def _own_ips(account: Account, settings: Settings) -> list[str]:
    return [t.value for t in account_targets(account, settings) if t.kind == IP]


def record_findings(
    session: Session,
    findings: list[DomainFindings],
    clients: dict[str, list[int]],
    *,
    now: datetime,
) -> SenderAuthRun:
    run = SenderAuthRun()
    before = {c.domain: c for c in latest_domain_checks(session, [f.domain for f in findings])}
    for found in findings:
        items = found.items()
        session.add(
            SenderAuthCheck(
                domain=found.domain,
                spf=found.spf.status,
                dkim=found.dkim.status,
                dmarc=found.dmarc.status,
                mx=found.mx.status,
                ptr=found.ptr.status if found.ptr else None,
                results={name: f.as_json() for name, f in items.items()},
                checked_at=now,
            )
        )
        run.checked.append(found.domain)
        failing = [name for name, f in items.items() if f.status == FAIL]
        if failing:
            run.failing[found.domain] = failing
        previous = before.get(found.domain)
        newly = [
            name
            for name in ALERTED_ITEMS
            if items[name].status == FAIL and (previous is None or getattr(previous, name) != FAIL)
        ]
        if newly:
            text = _alert_text(found, newly)
            for client_id in clients.get(found.domain, []):
                key = f"sender-auth-dns:{client_id}:{found.domain}:{'+'.join(newly)}"
                run.alerts.append((key, text, client_id))
    session.flush()
    return run


def _alert_text(found: DomainFindings, failing: list[str]) -> str:
    items = found.items()
    parts = [f"{name.upper()}: {items[name].problem}. Fix: {items[name].fix}" for name in failing]
    return f"Sender authentication of {found.domain} fails. " + " | ".join(parts)
