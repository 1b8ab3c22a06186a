"""The beat schedule: one declarative table built from settings. Beat only enqueues; each
entry expires before the next one is due so a backlog never piles up."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.dispatch_interval_seconds
    return {
        "dispatch": {
            "task": "sendfleet.dispatch",
            "schedule": interval,
            "options": {"expires": interval},
        },
        "recover": {
            "task": "sendfleet.recover",
            "schedule": settings.recovery_interval_seconds,
            "options": {"expires": settings.recovery_interval_seconds},
        },
    }
