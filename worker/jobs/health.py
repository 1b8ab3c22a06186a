"""Health checks of the pool (beat): every HEALTH_CHECK_INTERVAL_SECONDS each account that
is not disabled; every RESUME_CHECK_INTERVAL_SECONDS the paused accounts whose pause ran
out, which return to rotation only when their check passes (app.services.health_checks).

The probes run HEALTH_CHECK_CONCURRENCY at a time in threads (each is socket I/O bounded
by HEALTH_CHECK_TIMEOUT_SECONDS per step); each result is written in its own short
transaction, none held open while a server is slow."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, select

from app.db import unit_of_work
from app.models import Account, AccountStatus
from app.services.health_checks import (
    CheckOutcome,
    account_endpoint,
    probe_account,
    prune_history,
    record_check,
)
from app.settings import Settings
from rotator.endpoint import SmtpEndpoint
from worker.jobs import alerts
from worker.jobs.locks import RedisLock

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass
class HealthRun:
    checked: int = 0
    failed: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    kept_paused: list[int] = field(default_factory=list)
    pruned: int = 0
    skipped: bool = False  # another pass was still running

    def log_fields(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "failed": self.failed,
            "resumed": self.resumed,
            "kept_paused": self.kept_paused,
            "pruned": self.pruned,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class _Target:
    account_id: int
    client_id: int
    name: str
    email: str
    endpoint: SmtpEndpoint


def run_health_checks(clock: Clock | None = None) -> HealthRun:
    """Every account but the disabled ones. A pass still running when the next is due (slow
    servers, a big pool) makes the next one a no-op rather than a second pass beside it."""
    now = (clock or _now)()
    lock = RedisLock(
        current_app.extensions["redis"], "health_checks", _settings().health_check_interval_seconds
    )
    if not lock.acquire():
        log.info("health.pass_still_running")
        return HealthRun(skipped=True)
    try:
        run = check_accounts(Account.status != AccountStatus.DISABLED.value, clock=clock)
        with unit_of_work() as session:
            run.pruned = prune_history(session, _settings(), now=now)
    finally:
        lock.release()
    return run


def run_resume_checks(clock: Clock | None = None) -> HealthRun:
    """The paused accounts whose pause has run out."""
    now = (clock or _now)()
    return check_accounts(
        (Account.status == AccountStatus.PAUSED.value)
        & Account.paused_until.is_not(None)
        & (Account.paused_until <= now),
        clock=clock,
    )


def check_accounts(which: ColumnElement[bool], *, clock: Clock | None = None) -> HealthRun:
    settings = _settings()
    clock = clock or _now
    with unit_of_work() as session:
        accounts = session.scalars(select(Account).where(which).order_by(Account.id)).all()
        targets = [
            _Target(a.id, a.client_id, a.name, a.email, account_endpoint(settings, a))
            for a in accounts
        ]
    run = HealthRun()
    if not targets:
        return run
    with ThreadPoolExecutor(max_workers=settings.health_check_concurrency) as pool:
        results = pool.map(lambda t: probe_account(settings, t.endpoint, t.email), targets)
        for target, result in zip(targets, results, strict=True):
            with unit_of_work() as session:
                outcome = record_check(session, settings, target.account_id, result, now=clock())
            _tally(run, outcome)
            _alert(target, outcome, settings)
    return run


def _tally(run: HealthRun, outcome: CheckOutcome) -> None:
    run.checked += 1
    if not outcome.result.ok:
        run.failed.append(outcome.account_id)
    if outcome.resumed:
        run.resumed.append(outcome.account_id)
    if outcome.kept_paused:
        run.kept_paused.append(outcome.account_id)


def _alert(target: _Target, outcome: CheckOutcome, settings: Settings) -> None:
    label = f"Account {target.name} (#{target.account_id})"
    if outcome.resumed:
        alerts.notify(
            f"account-resumed:{target.account_id}",
            f"{label} is back in rotation: its pause ran out and its health check passed.",
            client_id=target.client_id,
        )
    elif outcome.kept_paused:
        alerts.notify(
            f"health-failed:{target.account_id}",
            f"{label} stays paused: its health check failed at {outcome.result.stage} "
            f"({outcome.result.error}). Next check in "
            f"{settings.health_check_interval_seconds // 60} min.",
            client_id=target.client_id,
        )
    elif not outcome.result.ok:
        alerts.notify(
            f"health-failed:{target.account_id}",
            f"{label} failed its health check at {outcome.result.stage} "
            f"({outcome.result.error}); it gets no sends until a check passes.",
            client_id=target.client_id,
        )


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _now() -> datetime:
    return datetime.now(UTC)
