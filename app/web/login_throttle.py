"""Wrong passwords at the web UI's sign-in, counted in Redis per account (the email typed)
and per client address. After the free failures, every further wrong password locks that
key for a doubling time (2, 4, 8 ... s up to LOGIN_LOCKOUT_MAX_SECONDS); a locked key is
refused before the password is checked, so guessing gets no faster by trying harder.
A successful sign-in clears the account's count (not the address's: one right password
must not reset a guesser who also owns an account)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from redis import Redis

from app.settings import Settings

PREFIX = "sendfleet:web:login"
# Failures are forgotten a day after the last one.
FAILURE_MEMORY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Lockout:
    seconds: int

    def message(self) -> str:
        wait = (
            f"{self.seconds} seconds"
            if self.seconds < 120
            else f"{math.ceil(self.seconds / 60)} minutes"
        )
        return f"Too many wrong passwords. Try again in {wait}."


def _key(kind: str, value: str) -> str:
    # Hashed: Redis keys then hold no address or email.
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"{PREFIX}:{kind}:{digest}"


class LoginThrottle:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.free = {
            "account": settings.login_free_failures_per_account,
            "address": settings.login_free_failures_per_address,
        }
        self.max_seconds = settings.login_lockout_max_seconds

    def _keys(self, email: str, address: str) -> dict[str, str]:
        return {"account": _key("account", email), "address": _key("address", address)}

    def locked(self, email: str, address: str) -> Lockout | None:
        """The longest lock still running on the account or the address, if any."""
        ttls = [self.redis.pttl(f"{key}:lock") for key in self._keys(email, address).values()]
        longest = max((t for t in ttls if t > 0), default=0)
        return Lockout(math.ceil(longest / 1000)) if longest else None

    def failed(self, email: str, address: str) -> Lockout | None:
        """Counts one wrong password; returns the lock it caused, if it caused one."""
        longest = 0
        pipe = self.redis.pipeline()
        keys = self._keys(email, address)
        for key in keys.values():
            pipe.incr(f"{key}:failures")
            pipe.expire(f"{key}:failures", FAILURE_MEMORY_SECONDS)
        counts = pipe.execute()[0::2]
        for (kind, key), count in zip(keys.items(), counts, strict=True):
            over = int(count) - self.free[kind]
            if over <= 0:
                continue
            seconds = min(self.max_seconds, 2 ** min(over, 20))
            self.redis.set(f"{key}:lock", "1", ex=seconds)
            longest = max(longest, seconds)
        return Lockout(longest) if longest else None

    def succeeded(self, email: str) -> None:
        key = _key("account", email)
        self.redis.delete(f"{key}:failures", f"{key}:lock")
