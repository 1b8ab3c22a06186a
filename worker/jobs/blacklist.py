"""The daily blacklist check (task `sendfleet.blacklist_check`).

1. Collect the targets: SENDING_IPS, every account's declared IP (or, for Postfix, the
   relays) and every own sending domain (app.services.blacklist.account_targets).
2. Look them all up at once with pydnsbl, outside any transaction (worker.jobs.dnsbl_lookup).
3. In one transaction: record one blacklist_checks row per target; pause every active
   account that stands on a listed target (also one whose temporary pause would run out
   into a listing); hand back to the health check each account paused by a listing whose
   targets are all clean now: paused_until = now, and the health check returns it only
   when its login passes. An unknown verdict changes nothing either way.
4. After the commit, alert: a new listing and a delisting per client whose accounts use
   the target (the on-call when none does); an incomplete check once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, BlacklistCheck, BlacklistStatus, EventType
from app.services.blacklist import Target, account_targets, all_targets, latest_checks
from app.settings import Settings
from rotator.dnsbl_answers import TargetResult, Verdict, removal_advice
from worker.jobs import alerts
from worker.jobs.dnsbl_lookup import lookup_targets

log = logging.getLogger(__name__)

PAUSED_BY = "blacklist"

# Active accounts, and paused ones whose pause would end by itself (into a listing);
# an operator's open-ended pause and a disabled account are left alone.
PAUSE = text(
    """
    WITH changed AS (
        UPDATE accounts
        SET status = 'paused', paused_by = :by, paused_reason = :reason, paused_until = NULL,
            -- a temporary pause it replaces stays on record
            pause_details = CAST(:details AS jsonb) || CASE WHEN status = 'paused' THEN
                jsonb_build_object('previous', jsonb_build_object('paused_by', paused_by,
                    'paused_reason', paused_reason, 'paused_until', paused_until))
                ELSE '{}'::jsonb END,
            updated_at = now()
        WHERE id = :id
          AND (status = 'active' OR (status = 'paused' AND paused_until IS NOT NULL))
        RETURNING id, client_id
    )
    INSERT INTO events (type, account_id, client_id, data)
    SELECT :event, id, client_id, CAST(:event_data AS jsonb) FROM changed
    RETURNING account_id
    """
)
RELEASE = text(
    """
    UPDATE accounts SET paused_until = :now, updated_at = now()
    WHERE id = :id AND status = 'paused' AND paused_by = :by AND paused_until IS NULL
    RETURNING id
    """
)


@dataclass(frozen=True)
class Alert:
    key: str
    text: str
    client_id: int | None


@dataclass
class BlacklistRun:
    checked: int = 0
    listed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    newly_listed: list[str] = field(default_factory=list)
    delisted: list[str] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def log_fields(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "listed": self.listed,
            "unknown": self.unknown,
            "paused": self.paused,
            "released": self.released,
        }


def run_blacklist_check(*, now: datetime | None = None) -> BlacklistRun:
    settings: Settings = current_app.extensions["settings"]
    now = now or datetime.now(UTC)
    with unit_of_work() as session:
        targets = all_targets(session.scalars(select(Account)), settings)
    results = lookup_targets(targets, settings) if targets else {}
    with unit_of_work() as session:
        run = record_results(session, settings, results, now=now)
    for alert in run.alerts:
        alerts.notify(alert.key, alert.text, client_id=alert.client_id)
    log.info("blacklist.checked", extra=run.log_fields())
    return run


def record_results(
    session: Session, settings: Settings, results: dict[Target, TargetResult], *, now: datetime
) -> BlacklistRun:
    """Steps 3 and the alerts' texts of step 4 (sent by the caller after the commit)."""
    run = BlacklistRun(checked=len(results))
    values = [t.value for t in results]
    before = {c.target: c.status for c in latest_checks(session, values, conclusive=True)}
    for target, result in sorted(results.items()):
        session.add(_row(target, result, now))
        if result.verdict == Verdict.LISTED:
            run.listed.append(target.value)
            if before.get(target.value) != BlacklistStatus.LISTED:
                run.newly_listed.append(target.value)
        elif result.verdict == Verdict.UNKNOWN:
            run.unknown.append(target.value)
        elif before.get(target.value) == BlacklistStatus.LISTED:
            run.delisted.append(target.value)
    session.flush()

    accounts = list(session.scalars(select(Account).order_by(Account.id)))
    on_target: dict[str, list[Account]] = defaultdict(list)
    for account in accounts:
        mine = account_targets(account, settings)
        for target in mine:
            on_target[target.value].append(account)
        verdicts = [results[t].verdict if t in results else Verdict.UNKNOWN for t in mine]
        if Verdict.LISTED in verdicts:
            listed = {t: results[t] for t in mine if results[t].verdict == Verdict.LISTED}
            if _pause(session, account, listed, now):
                run.paused.append(account.id)
        elif verdicts and set(verdicts) == {Verdict.CLEAN} and _release(session, account, now):
            run.released.append(account.id)

    for value in run.newly_listed:
        target = next(t for t in results if t.value == value)
        run.alerts.extend(_listing_alerts(target, results[target], on_target[value], run))
    for value in run.delisted:
        run.alerts.extend(_delisting_alerts(value, on_target[value], run))
    if run.unknown:
        run.alerts.append(_unknown_alert(run.unknown, results))
    return run


def _row(target: Target, result: TargetResult, now: datetime) -> BlacklistCheck:
    return BlacklistCheck(
        target=target.value,
        target_kind=target.kind,
        listed=result.verdict == Verdict.LISTED,
        lists_hit=list(result.lists_hit),
        status=result.verdict.value,
        note=result.note,
        list_results={name: r.as_json() for name, r in result.per_list.items()},
        checked_at=now,
    )


def _release(session: Session, account: Account, now: datetime) -> bool:
    row = session.execute(RELEASE, {"id": account.id, "now": now, "by": PAUSED_BY}).first()
    if row:
        log.info("blacklist.released", extra={"account_id": account.id})
    return row is not None


def _pause(
    session: Session, account: Account, listed: dict[Target, TargetResult], now: datetime
) -> bool:
    named = "; ".join(f"{t.value} on {', '.join(r.lists_hit)}" for t, r in sorted(listed.items()))
    reason = f"blacklisted: {named}"
    details = {
        "checked_at": now.isoformat(),
        "targets": {
            t.value: {
                "kind": t.kind,
                "lists": list(r.lists_hit),
                "answers": {n: list(lr.answers) for n, lr in r.per_list.items() if lr.answers},
            }
            for t, r in listed.items()
        },
    }
    event = {"reason": reason, "source": PAUSED_BY, **details}
    changed = session.execute(
        PAUSE,
        {
            "id": account.id,
            "by": PAUSED_BY,
            "reason": reason,
            "details": json.dumps(details),
            "event": EventType.ACCOUNT_PAUSED.value,
            "event_data": json.dumps(event),
        },
    ).first()
    if changed:
        log.warning("blacklist.paused", extra={"account_id": account.id, "reason": reason})
    return changed is not None


def _by_client(accounts: list[Account]) -> dict[int | None, list[Account]]:
    grouped: dict[int | None, list[Account]] = defaultdict(list)
    for account in accounts:
        grouped[account.client_id].append(account)
    return grouped or {None: []}


def _names(accounts: list[Account]) -> str:
    return ", ".join(f"{a.name} (#{a.id})" for a in accounts)


def _listing_alerts(
    target: Target, result: TargetResult, accounts: list[Account], run: BlacklistRun
) -> list[Alert]:
    advice = "; ".join(f"{name}: {removal_advice(name)}" for name in result.lists_hit)
    out = []
    for client_id, mine in _by_client(accounts).items():
        paused = [a for a in mine if a.id in run.paused]
        who = (
            f"Paused {len(paused)} account(s): {_names(paused)}; they return (through the "
            "health check) once every list says clean. "
            if paused
            else ""
        )
        text_ = (
            f"Blacklist: {target.kind} {target.value} is listed on "
            f"{', '.join(result.lists_hit)}. {who}What to do: {advice}."
        )
        out.append(Alert(f"blacklist:listed:{client_id}:{target.value}", text_, client_id))
    return out


def _delisting_alerts(value: str, accounts: list[Account], run: BlacklistRun) -> list[Alert]:
    out = []
    for client_id, mine in _by_client(accounts).items():
        released = [a for a in mine if a.id in run.released]
        who = (
            f" Handed {len(released)} account(s) back to the health check: {_names(released)}."
            if released
            else ""
        )
        text_ = f"Blacklist: {value} is no longer listed on any list.{who}"
        out.append(Alert(f"blacklist:delisted:{client_id}:{value}", text_, client_id))
    return out


def _unknown_alert(unknown: list[str], results: dict[Target, TargetResult]) -> Alert:
    notes = {t.value: r.note for t, r in results.items() if t.value in unknown}
    detail = "; ".join(f"{v}: {notes[v]}" for v in unknown[:10])
    more = f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
    return Alert(
        "blacklist:unknown",
        f"Blacklist check incomplete: {len(unknown)} target(s) unknown, not taken for clean "
        f"— {detail}{more}",
        None,
    )
