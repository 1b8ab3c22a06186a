"""Which send process holds a row, and whether it is still alive.

Each process that claims recipients has an identity unique across hosts and restarts
(`host:pid:token`), written into `recipients.claimed_by`, and a heartbeat: a Redis key
`sf:hb:<identity>` refreshed every HEARTBEAT_INTERVAL_SECONDS by a daemon thread, expiring
after HEARTBEAT_TTL_SECONDS. A thread rather than the task loop, so a process busy inside a
slow SMTP transaction keeps beating.

Recovery asks `Liveness.dead(holders)`. A missing key is only evidence of death when Redis
can be trusted to have kept it:

- Redis that lost its data (FLUSHALL, a restart, a failover to another node) loses every
  heartbeat at once although every worker lives. An epoch key records the Redis run id and
  when recovery first saw it; with a new or changed run id nothing is judged dead until one
  TTL has passed, by which time every live process has written its key again.
- A single missing key (evicted under memory pressure, a refresh lost to a network blip) is
  a suspect, not a verdict: it must still be missing on a later pass at least two
  heartbeat intervals after the first, time in which a live process writes it again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import RedisError

from app.metrics.counters import HEARTBEAT_INDEX_KEY
from app.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "sf:hb:"
EPOCH_KEY = "sf:hb-epoch"
SUSPECTS_KEY = "sf:hb-suspects"
_MAX_IDENTITY = 128  # recipients.claimed_by


def heartbeat_key(identity: str) -> str:
    return KEY_PREFIX + identity


def new_identity() -> str:
    token = secrets.token_hex(6)
    suffix = f":{os.getpid()}:{token}"
    return socket.gethostname()[: _MAX_IDENTITY - len(suffix)] + suffix


class Heartbeat:
    """One process's heartbeat: `beat()` once, or `start()` the refreshing thread."""

    def __init__(self, redis: Redis, identity: str, *, interval: float, ttl: float) -> None:
        self.redis = redis
        self.identity = identity
        self.interval = interval
        self.ttl_ms = max(int(ttl * 1000), 1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        # SET, not EXPIRE: a key that vanished (flush, eviction) comes back on the next beat.
        # The index (identity -> expiry) lets /metrics count live processes without
        # scanning a keyspace that holds every limiter window.
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(heartbeat_key(self.identity), "1", px=self.ttl_ms)
            pipe.zadd(HEARTBEAT_INDEX_KEY, {self.identity: time.time() * 1000 + self.ttl_ms})
            pipe.execute()

    def start(self) -> None:
        self.beat()  # alive before the first claim can be committed
        self._thread = threading.Thread(target=self._run, name="sendfleet-heartbeat", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Clean exit: nothing is held any more, so the key may go at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval + 1)
        try:
            self.redis.delete(heartbeat_key(self.identity))
            self.redis.zrem(HEARTBEAT_INDEX_KEY, self.identity)
        except RedisError:
            log.warning("heartbeat.delete_failed", extra={"holder": self.identity})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # Redis away for a moment: the next beat tries again
                log.warning("heartbeat.failed", extra={"holder": self.identity}, exc_info=True)


_lock = threading.Lock()
_current: Heartbeat | None = None
_current_pid: int | None = None


def ensure_beating(settings: Settings) -> str:
    """This process's identity, with its heartbeat running (started on first use; a forked
    child gets a new identity and its own thread, since threads do not survive fork)."""
    global _current, _current_pid
    with _lock:
        if _current is None or _current_pid != os.getpid() or not _current.alive():
            redis = Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=2,
                socket_timeout=max(min(settings.heartbeat_interval_seconds, 5.0), 1.0),
            )
            beat = Heartbeat(
                redis,
                new_identity(),
                interval=settings.heartbeat_interval_seconds,
                ttl=settings.heartbeat_ttl_seconds,
            )
            beat.start()
            _current, _current_pid = beat, os.getpid()
            log.info("heartbeat.started", extra={"holder": beat.identity})
        return _current.identity


def stop_beating() -> None:
    global _current, _current_pid
    with _lock:
        if _current is not None and _current_pid == os.getpid():
            _current.stop()
        _current, _current_pid = None, None


class Liveness:
    """Recovery's view of the heartbeats (see the module docstring for the rules)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.ttl_ms = int(settings.heartbeat_ttl_seconds * 1000)
        self.confirm_ms = int(2 * settings.heartbeat_interval_seconds * 1000)
        # Set by dead() when it finds Redis new to it: everything Redis held is gone,
        # queued task messages too when Redis is also the broker.
        self.redis_renewed = False

    def dead(self, holders: Iterable[str]) -> set[str]:
        """The holders whose death is established; records first sightings of missing ones."""
        holders = sorted(set(holders))
        now = self._now_ms()
        if not self._epoch_trusted(now):
            return set()
        suspects = {_text(k): int(v) for k, v in self.redis.hgetall(SUSPECTS_KEY).items()}
        pipe = self.redis.pipeline(transaction=False)
        for holder in holders:
            pipe.exists(heartbeat_key(holder))
        present = pipe.execute()
        dead: set[str] = set()
        first_seen: dict[str, int] = {}
        for holder, exists in zip(holders, present, strict=True):
            if exists:
                continue
            since = suspects.get(holder)
            if since is None:
                first_seen[holder] = now
            elif now - since >= self.confirm_ms:
                dead.add(holder)
        # Forget suspects that beat again, hold nothing any more, or are dead (their rows are
        # recovered in this pass).
        alive = {h for h, exists in zip(holders, present, strict=True) if exists}
        forget = [h for h in suspects if h in alive or h in dead or h not in holders]
        pipe = self.redis.pipeline(transaction=False)
        if first_seen:
            pipe.hset(SUSPECTS_KEY, mapping={h: str(t) for h, t in first_seen.items()})
        if forget:
            pipe.hdel(SUSPECTS_KEY, *forget)
        pipe.execute()
        return dead

    def _epoch_trusted(self, now_ms: int) -> bool:
        run_id = str(self.redis.info("server")["run_id"])
        raw = self.redis.get(EPOCH_KEY)
        seen_run, _, since = (_text(raw) if raw else "").partition(":")
        if seen_run != run_id or not since.isdigit():
            # A Redis that is new to us (first run, restart, failover, flush): every key
            # it lacks may simply not have been written again yet.
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(EPOCH_KEY, f"{run_id}:{now_ms}")
            pipe.delete(SUSPECTS_KEY)
            pipe.execute()
            log.warning("heartbeat.redis_epoch_new", extra={"redis_run_id": run_id})
            self.redis_renewed = True
            return False
        return now_ms - int(since) >= self.ttl_ms

    def _now_ms(self) -> int:
        # Redis's clock, so that hosts with skewed clocks cannot disagree about ages.
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
