"""The beat schedule: one declarative table built from settings. Beat only enqueues; each
entry expires before the next one is due so a backlog never piles up. Daily jobs run at
their hour in WARMUP_TIMEZONE (ZonedCrontab): the DNS checks first (DAILY_CHECKS_HOUR),
so that the warm-up ramp (WARMUP_HOUR) judges fresh results, then the summary."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab

from app.settings import Settings

DAY = 86400
# A daily job enqueued while no worker runs may start this much later, not a day later.
DAILY_EXPIRES = 6 * 3600
# recipient_counts' slots of closed connections folded together (worker.jobs.count_compaction).
COMPACTION_INTERVAL_SECONDS = 600


class ZonedCrontab(crontab):  # type: ignore[misc]
    """A crontab read in its own time zone rather than the app's (UTC): 06:00 in
    Europe/Berlin stays 06:00 there across daylight saving time."""

    def __init__(self, *, zone: str, **fields: Any) -> None:
        super().__init__(**fields)
        self.zone = zone

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.zone)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {
            "minute": self._orig_minute,
            "hour": self._orig_hour,
            "day_of_week": self._orig_day_of_week,
            "day_of_month": self._orig_day_of_month,
            "month_of_year": self._orig_month_of_year,
        }
        return (_zoned_crontab, (self.zone, fields))

    def __repr__(self) -> str:
        return f"<ZonedCrontab {self._orig_minute} {self._orig_hour} * * * ({self.zone})>"


def _zoned_crontab(zone: str, fields: dict[str, Any]) -> ZonedCrontab:
    return ZonedCrontab(zone=zone, **fields)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    interval = settings.dispatch_interval_seconds
    zone = settings.warmup_timezone

    def every(task: str, seconds: float) -> dict[str, Any]:
        return {"task": task, "schedule": seconds, "options": {"expires": seconds}}

    def daily(task: str, hour: int, minute: int = 0) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": ZonedCrontab(zone=zone, hour=hour, minute=minute),
            "options": {"expires": DAILY_EXPIRES},
        }

    return {
        "dispatch": every("sendfleet.dispatch", interval),
        "recover": every("sendfleet.recover", settings.recovery_interval_seconds),
        "health-checks": every("sendfleet.health_checks", settings.health_check_interval_seconds),
        "resume-checks": every("sendfleet.resume_checks", settings.resume_check_interval_seconds),
        "guards": every("sendfleet.guards", 60),
        "compact-counts": every("sendfleet.compact_counts", COMPACTION_INTERVAL_SECONDS),
        "blacklist-check": daily("sendfleet.blacklist_check", settings.daily_checks_hour),
        "sender-auth-check": daily("sendfleet.sender_auth_check", settings.daily_checks_hour, 10),
        "warmup-ramp": daily("sendfleet.warmup_ramp", settings.warmup_hour),
        "daily-summary": daily("sendfleet.daily_summary", settings.daily_summary_hour),
    }
