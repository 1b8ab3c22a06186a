"""The daily warm-up ramp (beat, at WARMUP_HOUR in WARMUP_TIMEZONE): each warming account's
previous local day is judged and the ramp advances or holds (app.services.warmup). Running
it again the same day changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import current_app
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account
from app.services.warmup import RampResult, run_ramp
from app.services.warmup_signals import dns_problems
from app.settings import Settings


def run_warmup_ramp(clock: Callable[[], datetime] | None = None) -> RampResult:
    settings: Settings = current_app.extensions["settings"]
    now = (clock or (lambda: datetime.now(UTC)))()

    def checks(session: Session, account: Account) -> list[str]:
        return dns_problems(session, account, settings)

    with unit_of_work() as session:
        return run_ramp(session, settings, now=now, dns_checks=checks)
