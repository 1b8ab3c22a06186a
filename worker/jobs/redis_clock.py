"""The limiter's clock, as a send process reads it.

Every send's moment (recipients.slot_at) is placed on Redis's clock: limiter.lua scores
its windows by Redis TIME. A send worker on another node waits for those moments by its
own clock, so a worker whose clock is off by s seconds would send s seconds early or late,
and two workers off in different directions could put one account's sends closer together
than its limit allows, as the receiving server sees them. So a send process keeps its
offset from Redis's clock, measured with one TIME round trip (accurate to half of it) and
refreshed every REFRESH_SECONDS, and waits by Redis's clock. NTP on the nodes still
matters (logs, TLS); this keeps the limits from depending on it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Final, Protocol

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 60.0
# An offset this large is worth telling the operator about: logged at each measurement,
# and an alert (deduplicated per host) from the processes clock_of() makes.
WARN_SECONDS: Final = 1.0


class _TimeSource(Protocol):
    def time(self) -> tuple[int, int]: ...


class RedisClock:
    def __init__(
        self,
        redis: _TimeSource,
        refresh_seconds: float = REFRESH_SECONDS,
        on_offset: Callable[[float], object] | None = None,
    ) -> None:
        """`on_offset(seconds)` is called after each measurement of WARN_SECONDS or more."""
        self._redis = redis
        self._refresh = refresh_seconds
        self._on_offset = on_offset
        self._offset = 0.0
        self._measured_at: float | None = None  # time.monotonic() of the last measurement

    def now(self) -> float:
        """Redis's time now, as a Unix timestamp."""
        return time.time() + self.offset()

    def to_local(self, at: float) -> float:
        """A moment on Redis's clock as this host's clock shows it (a Celery ETA)."""
        return at - self.offset()

    def offset(self) -> float:
        """Seconds to add to this host's clock to read Redis's."""
        due = self._measured_at is None or time.monotonic() - self._measured_at >= self._refresh
        if due:
            self._measure()
        return self._offset

    def _measure(self) -> None:
        try:
            before = time.time()
            seconds, micros = self._redis.time()
            after = time.time()
        except Exception:  # Redis away: the last offset stands; sends fail on it anyway
            log.warning("send.clock_unmeasured", exc_info=True)
            self._measured_at = time.monotonic()
            return
        self._offset = seconds + micros / 1e6 - (before + after) / 2
        self._measured_at = time.monotonic()
        if abs(self._offset) >= WARN_SECONDS:
            log.warning(
                "send.clock_offset",
                extra={"offset_seconds": round(self._offset, 3), "round_trip": after - before},
            )
            if self._on_offset is not None:
                try:
                    self._on_offset(self._offset)
                except Exception:  # telling the operator must never stop a send
                    log.warning("send.clock_offset_unreported", exc_info=True)


def clock_of(extensions: dict[str, object]) -> RedisClock:
    """The process's clock, kept beside its Redis client (the Flask app's extensions)."""
    clock = extensions.get("redis_clock")
    if not isinstance(clock, RedisClock):
        clock = RedisClock(extensions["redis"], on_offset=alert_offset)  # type: ignore[arg-type]
        extensions["redis_clock"] = clock
    return clock


def alert_offset(offset: float) -> None:
    """The on-call hears of it once per host (ALERT_DEDUP_SECONDS): a clock this far off is
    a host to fix, not a send to retry."""
    from worker.jobs import alerts

    host = socket.gethostname()
    ahead_or_behind = "ahead of" if offset < 0 else "behind"
    alerts.notify(
        f"clock-offset:{host}",
        f"Worker host {host}: its clock is {abs(offset):.1f} s {ahead_or_behind} Redis's, "
        "the limiter's clock. Sends wait by Redis's clock; a host more than "
        "SEND_SLOT_TOLERANCE_SECONDS behind starts each paced send late, and those sends are "
        "placed again until its clock is right. Check NTP on it (timedatectl, chrony).",
    )
