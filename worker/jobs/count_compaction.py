"""Folds the recipient_counts slots of database backends that are gone (pooled connections
closed, processes replaced) into slot 0, so each campaign keeps a few rows (beat, every
COMPACTION_INTERVAL_SECONDS in worker/schedule.py)."""

from __future__ import annotations

from app.db import unit_of_work
from app.services import recipient_counts


def run_compaction() -> int:
    """The number of slot rows folded; changes no count."""
    with unit_of_work() as session:
        return recipient_counts.compact(session)
