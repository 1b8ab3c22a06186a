"""Beat's scheduler: celery-redbeat (the schedule and a lock in Redis, so of two beat
processes started by mistake only the lock's holder enqueues; the other waits and takes
over when the holder stops renewing the lock for BEAT_LOCK_TIMEOUT_SECONDS), with two
things redbeat does not do on its own:

- Static entries keep their schedule object from worker/schedule.py. Redbeat stores a
  crontab as its five fields only and rebuilds it in the app's time zone (UTC), which
  would move the daily jobs off WARMUP_TIMEZONE after the first reload.
- Redis losing its data (a restart without persistence, FLUSHALL, a failover; drilled in
  tests/e2e/test_drills.py) takes the lock and the schedule with it. Redbeat would stop
  beat with LockNotOwnedError and, restarted, have nothing scheduled. Here the lock is
  taken again (waiting if another beat got it first) and the schedule written again; a
  Redis that does not answer costs a retry a second later, never the beat process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.schedules import maybe_schedule
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    RedBeatSchedulerEntry,
    get_redis,
)
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class SendfleetEntry(RedBeatSchedulerEntry):  # type: ignore[misc]
    @classmethod
    def from_key(cls, key: str, app: Any = None) -> SendfleetEntry:
        entry: SendfleetEntry = super().from_key(key, app=app)
        static = entry.app.conf.beat_schedule.get(entry.name)
        if static is not None:
            entry.schedule = maybe_schedule(static["schedule"], False, entry.app)
        return entry


class SendfleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    Entry = SendfleetEntry
    _redis_down = False

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            self._hold_lock()
            self._restore_schedule()
            interval: float = super().tick(*args, **kwargs)
        except RedisError as exc:
            if not self._redis_down:
                log.warning("beat.redis_unavailable", extra={"error": type(exc).__name__})
                self._redis_down = True
            return RETRY_SECONDS
        if self._redis_down:
            log.warning("beat.redis_back")
            self._redis_down = False
        return interval

    def _hold_lock(self) -> None:
        if not self.lock_key:
            return
        if self.lock is None:  # Redis was away when beat started (redbeat's start-up hook)
            self.lock = get_redis(self.app).lock(
                self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval
            )
            self._acquire()
            return
        try:
            self.lock.extend(int(self.lock_timeout))
        except LockError:
            log.warning("beat.lock_lost", extra={"lock": self.lock_key})
            self._acquire()

    def _acquire(self) -> None:
        # Blocks while another beat holds the lock: that one schedules meanwhile.
        self.lock.acquire()
        # Redbeat's own extend script sets the timeout instead of adding to it.
        self.lock.lua_extend = get_redis(self.app).register_script(LUA_EXTEND_TO_SCRIPT)
        log.info("beat.lock_acquired", extra={"lock": self.lock_key})

    def _restore_schedule(self) -> None:
        if not get_redis(self.app).exists(self.app.redbeat_conf.schedule_key):
            log.warning("beat.schedule_restored")
            self.setup_schedule()
