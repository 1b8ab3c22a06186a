"""The daily summary (`sendfleet.daily_summary`): the last 24 hours' sent, bounced, deferred
and failed per account and per campaign, and the accounts in trouble, per client (to the
client's own chat, or the operator's when it has none), plus an overall one to the operator
chat (TELEGRAM_CHAT_ID) with every client's totals and troubles.

One aggregate over the day's outcome events (the BRIN index on created_at); the rest is per
account and per campaign, never per recipient."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.settings import Settings
from worker.jobs import alerts

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
SUMMARY_QUIET_SECONDS = 2 * 86400  # the key names the date: one summary per day
MAX_LINES = 15  # per section; Telegram cuts a message at 4096 characters

OUTCOMES = text(
    """
    SELECT e.account_id, e.campaign_id, e.type, count(*) AS n
    FROM events e
    WHERE e.created_at >= :since AND e.created_at < :until
      AND e.type IN ('sent', 'bounced', 'deferred', 'failed')
    GROUP BY e.account_id, e.campaign_id, e.type
    """
)
ACCOUNTS = text(
    """
    SELECT id, client_id, name, status, paused_reason, paused_by, last_health_ok,
           last_health_error
    FROM accounts ORDER BY id
    """
)
CAMPAIGNS = text("SELECT id, client_id, name, status FROM campaigns WHERE id = ANY(:ids)")
CLIENTS = text("SELECT id, name FROM clients ORDER BY id")

KINDS = ("sent", "bounced", "deferred", "failed")


@dataclass
class Counts:
    sent: int = 0
    bounced: int = 0
    deferred: int = 0
    failed: int = 0

    def add(self, kind: str, n: int) -> None:
        setattr(self, kind, getattr(self, kind) + n)

    def line(self) -> str:
        final = self.sent + self.bounced + self.failed
        rate = f" ({100 * self.bounced / final:.1f} %)" if final else ""
        return (
            f"sent {self.sent}, bounced {self.bounced}{rate}, deferred {self.deferred}, "
            f"failed {self.failed}"
        )


@dataclass
class ClientSummary:
    client_id: int
    name: str
    total: Counts = field(default_factory=Counts)
    accounts: dict[int, tuple[str, Counts]] = field(default_factory=dict)
    campaigns: dict[int, tuple[str, Counts]] = field(default_factory=dict)
    trouble: list[str] = field(default_factory=list)


def run_daily_summary() -> list[ClientSummary]:
    settings: Settings = current_app.extensions["settings"]
    now = datetime.now(UTC)
    with unit_of_work() as session:
        summaries = summarise(session, settings, now)
    send_summaries(summaries, now)
    return summaries


def summarise(session: Session, settings: Settings, now: datetime) -> list[ClientSummary]:
    clients = {
        row.id: ClientSummary(row.id, row.name) for row in session.execute(CLIENTS)
    }  # fmt: skip
    accounts = {row.id: row for row in session.execute(ACCOUNTS)}
    outcomes = session.execute(OUTCOMES, {"since": now - DAY, "until": now}).all()
    campaign_ids = sorted({row.campaign_id for row in outcomes if row.campaign_id is not None})
    campaigns = {row.id: row for row in session.execute(CAMPAIGNS, {"ids": campaign_ids})}
    for row in outcomes:
        owner = accounts.get(row.account_id) or campaigns.get(row.campaign_id)
        summary = clients.get(owner.client_id) if owner is not None else None
        if summary is None:
            continue  # an account and campaign both deleted since: history only
        summary.total.add(row.type, row.n)
        if row.account_id in accounts:
            name = accounts[row.account_id].name
            summary.accounts.setdefault(row.account_id, (name, Counts()))[1].add(row.type, row.n)
        if row.campaign_id in campaigns:
            name = campaigns[row.campaign_id].name
            summary.campaigns.setdefault(row.campaign_id, (name, Counts()))[1].add(row.type, row.n)
    for account in accounts.values():
        if account.client_id in clients:
            problem = _trouble(settings, account, clients[account.client_id])
            if problem:
                clients[account.client_id].trouble.append(problem)
    return list(clients.values())


def _trouble(settings: Settings, row: Any, summary: ClientSummary) -> str | None:
    """Why the account (a row of ACCOUNTS) needs a look, or None."""
    if row.status != "active":
        by = f" by {row.paused_by}" if row.paused_by else ""
        return f"{row.name} (#{row.id}) {row.status}{by}: {(row.paused_reason or '')[:160]}"
    if row.last_health_ok is False:
        error = (row.last_health_error or "")[:160]
        return f"{row.name} (#{row.id}) failed its last health check: {error}"
    counts = summary.accounts.get(row.id)
    if counts is None:
        return None
    c = counts[1]
    final = c.sent + c.bounced + c.failed
    if final >= settings.guard_min_sends and (
        100 * c.bounced / final > settings.guard_bounce_rate_percent
    ):
        return f"{row.name} (#{row.id}) bounced {c.bounced} of {final} in the last 24 h"
    return None


def client_text(summary: ClientSummary, now: datetime) -> str:
    lines = [f"Daily summary, 24 h to {now:%Y-%m-%d %H:%M} UTC: {summary.total.line()}"]
    lines += _section("Accounts", summary.accounts)
    lines += _section("Campaigns", summary.campaigns)
    lines += _list("Accounts in trouble", summary.trouble)
    return "\n".join(lines)


def overall_text(summaries: list[ClientSummary], now: datetime) -> str:
    total = Counts()
    for summary in summaries:
        for kind in KINDS:
            total.add(kind, getattr(summary.total, kind))
    lines = [f"Daily summary, all clients, 24 h to {now:%Y-%m-%d %H:%M} UTC: {total.line()}"]
    lines += _list("Clients", [f"{s.name} (#{s.client_id}): {s.total.line()}" for s in summaries])
    trouble = [f"[{s.name}] {line}" for s in summaries for line in s.trouble]
    lines += _list("Accounts in trouble", trouble)
    return "\n".join(lines)


def send_summaries(summaries: list[ClientSummary], now: datetime) -> None:
    day = f"{now:%Y-%m-%d}"
    for summary in summaries:
        if not (summary.accounts or summary.campaigns or summary.trouble):
            continue  # nothing sent and nothing wrong: no message
        alerts.notify(
            f"daily-summary:{summary.client_id}:{day}",
            client_text(summary, now),
            client_id=summary.client_id,
            dedup_seconds=SUMMARY_QUIET_SECONDS,
        )
    alerts.notify(
        f"daily-summary:all:{day}",
        overall_text(summaries, now),
        dedup_seconds=SUMMARY_QUIET_SECONDS,
    )


def _section(title: str, rows: dict[int, tuple[str, Counts]]) -> list[str]:
    ranked = sorted(rows.items(), key=lambda item: (-item[1][1].sent, item[0]))
    return _list(title, [f"{name} (#{key}): {counts.line()}" for key, (name, counts) in ranked])


def _list(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = [f"- {item}" for item in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        shown.append(f"- ... and {len(items) - MAX_LINES} more")
    return [f"{title}:", *shown]
