"""What the limiter's windows will still count at the end of today's sending hours: the
forecast's "used today" (app.services.forecast)."""

from __future__ import annotations

from datetime import UTC, datetime

from redis import Redis
from sqlalchemy.orm import Session

from app.models import Account
from app.services.sends import sends_in_last_day
from rotator.limiter import Limiter, Scope, Window

LIMITER_PREFIX = "sf:lim"  # rotator.limiter.Limiter's default


class Counted:
    """What each window will still count at the end of day 0's sending hours, read from
    the limiter in one pipeline per call; when Redis has lost the windows, the accounts'
    day from the database and nothing for the other scopes (said in the notes)."""

    def __init__(
        self,
        session: Session,
        redis: Redis,
        at: datetime,
        accounts: list[Account],
        notes: list[str],
    ) -> None:
        limiter = Limiter(redis, require_epoch=True)
        self._session, self._limiter, self._at, self._notes = session, limiter, at, notes
        self._redis = redis
        self._lost = False
        self._fallback: dict[int, int] = {}
        self._accounts = accounts
        self._cache: dict[tuple[str, str, int], int] = {}

    def day(self, windows: list[Window]) -> list[int]:
        missing = [w for w in windows if _ident(w) not in self._cache]
        if missing and not self._lost and not self._limiter.is_built():
            self._lost = True
            self._notes.append(
                "The limiter's windows are being rebuilt: today's use is counted from the "
                "database for accounts only."
            )
            self._fallback = sends_in_last_day(
                self._session, [a.id for a in self._accounts], datetime.now(UTC)
            )
        if missing and not self._lost:
            counts = _still_counted_at(self._redis, missing, self._at.timestamp())
            self._cache.update(zip(map(_ident, missing), counts, strict=True))
        if self._lost:
            return [
                self._fallback.get(int(w.key), 0) if w.scope == Scope.ACCOUNT else 0
                for w in windows
            ]
        return [self._cache[_ident(w)] for w in windows]


def _ident(window: Window) -> tuple[str, str, int]:
    return (window.scope.value, window.key, int(window.seconds))


def _still_counted_at(redis: Redis, windows: list[Window], at: float) -> list[int]:
    """Per window: how many of its reservations will still count at `at` (epoch seconds,
    now or later), read with ZCOUNT so nothing is trimmed (the limiter's `used` with a later
    clock would drop members that count now). The keys and scores are rotator.limiter's:
    "<prefix>:<scope>:<key>:<seconds>", each member scored with its time in microseconds."""
    pipe = redis.pipeline(transaction=False)
    for w in windows:
        name = f"{LIMITER_PREFIX}:{w.scope.value}:{w.key}:{w.seconds}"
        pipe.zcount(name, f"({round((at - w.seconds) * 1_000_000)}", "+inf")
    return [int(n) for n in pipe.execute()]
