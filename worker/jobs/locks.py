"""A cluster-wide lock in Redis: SET NX PX, released only by its holder (compare-and-delete)."""

from __future__ import annotations

import uuid

from redis import Redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLock:
    def __init__(self, redis: Redis, name: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = f"sf:lock:{name}"
        self._ttl_ms = int(ttl_seconds * 1000)
        self._token = uuid.uuid4().hex
        self._release = redis.register_script(_RELEASE)

    def acquire(self) -> bool:
        return bool(self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))

    def release(self) -> None:
        self._release(keys=[self._key], args=[self._token])
