"""Counters the send side writes into Redis and /metrics reads back: limiter refusals per
scope and the dispatcher's ticks. Redis is shared by every worker process on every node, so
one HINCRBY per event is correct however many there are, and no worker needs an exporter.
A Redis that loses its data resets them, which Prometheus reads as a counter reset.

Writing a metric never breaks the work it measures: a Redis error is logged and dropped."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

REFUSALS_KEY = "sf:metrics:limiter-refusals"
DISPATCH_KEY = "sf:metrics:dispatch"
# Each send process's heartbeat identity scored by when its heartbeat expires (ms), written
# with the heartbeat itself (worker.jobs.heartbeat).
HEARTBEAT_INDEX_KEY = "sf:hb-index"
# Identities whose heartbeat ended longer ago than this are dropped from the index.
_FORGET_MS = 3_600_000


def count_limiter_refusals(redis: Redis, refusals: Mapping[str, int]) -> None:
    """Adds one dispatch pass's refusals, `{scope: count}` (rotator.limiter.Scope values)."""
    counts = {str(scope): n for scope, n in refusals.items() if n}
    if not counts:
        return
    try:
        with redis.pipeline(transaction=False) as pipe:
            for scope, n in counts.items():
                pipe.hincrby(REFUSALS_KEY, scope, n)
            pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("metrics.write_failed", extra={"metric": "refusals", "error": str(exc)})


def limiter_refusals(redis: Redis) -> dict[str, int]:
    return {_text(k): int(v) for k, v in redis.hgetall(REFUSALS_KEY).items()}


def record_dispatch_tick(
    redis: Redis, seconds: float, *, queued: int, at: float | None = None
) -> None:
    """One dispatcher tick: its duration (last and summed) and what it queued."""
    try:
        with redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(DISPATCH_KEY, "ticks", 1)
            pipe.hincrbyfloat(DISPATCH_KEY, "seconds", seconds)
            pipe.hincrby(DISPATCH_KEY, "queued", queued)
            pipe.hset(
                DISPATCH_KEY,
                mapping={"last_seconds": seconds, "last_at": at if at is not None else time.time()},
            )
            pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("metrics.write_failed", extra={"metric": "dispatch", "error": str(exc)})


@dataclass(frozen=True)
class DispatchTicks:
    ticks: int
    seconds: float
    queued: int
    last_seconds: float | None
    last_at: float | None


def dispatch_ticks(redis: Redis) -> DispatchTicks:
    raw = {_text(k): _text(v) for k, v in redis.hgetall(DISPATCH_KEY).items()}
    return DispatchTicks(
        ticks=int(raw.get("ticks", 0)),
        seconds=float(raw.get("seconds", 0)),
        queued=int(raw.get("queued", 0)),
        last_seconds=float(raw["last_seconds"]) if "last_seconds" in raw else None,
        last_at=float(raw["last_at"]) if "last_at" in raw else None,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def live_send_processes(redis: Redis, now_ms: float | None = None) -> list[str]:
    """Identities (`host:pid:token`) whose heartbeat has not expired."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    with redis.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(HEARTBEAT_INDEX_KEY, "-inf", now_ms - _FORGET_MS)
        pipe.zrangebyscore(HEARTBEAT_INDEX_KEY, now_ms, "+inf")
        _, live = pipe.execute()
    return [_text(identity) for identity in live]


def redis_of_app() -> Redis:
    from flask import current_app

    redis: Redis = current_app.extensions["redis"]
    return redis
