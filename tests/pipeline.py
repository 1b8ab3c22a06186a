"""Drives the real dispatcher and send path in-process (no Celery), for deterministic tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask

from app.db import unit_of_work
from app.services.limits import make_limiter
from worker.jobs import send
from worker.jobs.dispatch import DispatchResult, dispatch_batch


def dispatch(app: Flask, now: datetime | None = None) -> DispatchResult:
    with app.app_context(), unit_of_work() as session:
        return dispatch_batch(
            session,
            make_limiter(app.extensions["redis"], app.extensions["settings"]),
            app.extensions["settings"],
            now=now or datetime.now(UTC),
        )


def send_batches(app: Flask, result: DispatchResult) -> list[send.BatchResult]:
    outcomes = []
    with app.app_context():
        for account_id, ids, _ in result.batches:
            outcomes.append(send.send_batch(account_id, ids))
    return outcomes


def run_until_idle(app: Flask, rounds: int = 20) -> list[send.BatchResult]:
    """Dispatch and send until a pass queues nothing."""
    results = []
    for _ in range(rounds):
        result = dispatch(app)
        if not result.queued:
            break
        results += send_batches(app, result)
    return results


def smtp_account(server: Any, **overrides: Any) -> dict[str, Any]:
    """Account fields pointing at a ScriptedSMTPServer."""
    values = {"host": "127.0.0.1", "port": server.port, "security": "none"}
    values.update(overrides)
    return values
