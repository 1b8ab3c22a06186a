"""Campaign sending windows: {"timezone", "days" (Monday=0), "start_hour", "end_hour"}."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo


def in_window(window: dict[str, Any] | None, now: datetime) -> bool:
    """True when `now` (aware) falls inside the window; no window means always."""
    if not window:
        return True
    local = now.astimezone(ZoneInfo(window.get("timezone") or "UTC"))
    days = window.get("days")
    if days is not None and local.weekday() not in days:
        return False
    start = window.get("start_hour", 0)
    end = window.get("end_hour", 24)
    return bool(start <= local.hour < end)
