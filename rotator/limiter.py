"""Multi-scope sliding-window rate limiter: one Lua script, all or nothing, in Redis.

"Sliding" means: never more than `limit` reservations in ANY `seconds`-long
interval. A reservation made at t counts until t + seconds (exclusive), so a
refused caller can retry exactly `retry_after` seconds later.

A reservation may also be placed ahead, up to a horizon: at the earliest moment all of its
windows have room, counting the places already given out ahead (`Decision.at`). The sender
then goes at that moment, not before; one that comes later than `slack_seconds` after it
gives the place back and asks again, and every window counts `slack_seconds` longer than
its nominal span, so a send up to that late still keeps the limit as the receiving server
counts it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    import redis

_SCRIPT = (Path(__file__).with_name("limiter.lua")).read_text(encoding="utf-8")
_US = 1_000_000
# Members per Lua call when restoring windows (a few ms of Redis time each, so the broker
# and the locks sharing Redis are not held up).
_RESTORE_BATCH = 20_000


class Scope(StrEnum):
    SYSTEM = "system"
    ACCOUNT = "account"
    SENDING_DOMAIN = "sending_domain"
    RECIPIENT_DOMAIN = "recipient_domain"
    CAMPAIGN = "campaign"
    CLIENT = "client"


class WindowsLost(Exception):
    """Redis no longer holds the windows (restarted without persistence, flushed, failed
    over): nothing may be reserved until they are rebuilt from the record of what was sent
    and `Limiter.restore` has written them."""


WindowId = tuple[Scope, str, float]  # (scope, key, seconds): one sorted set


@dataclass(frozen=True)
class Window:
    scope: Scope
    key: str
    seconds: float
    limit: int
    # A spacing between sends (a pace), not a limit late sends must stay within: counted
    # without the slack. Every use of one window must say the same.
    exact: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float
    refused: Window | None
    token: str
    # When allowed: the moment (epoch seconds, Redis clock) the reservation is placed at.
    at: float = 0.0


class Limiter:
    """With `require_epoch`, `reserve_many` and `used` raise WindowsLost once Redis has lost
    the windows (their epoch key is gone), instead of answering from empty windows."""

    def __init__(
        self,
        redis: redis.Redis,
        prefix: str = "sf:lim",
        *,
        require_epoch: bool = False,
        slack_seconds: float = 0.0,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._require_epoch = require_epoch
        # Every operation on a window must count the same span, or one would trim members
        # another still counts: all limiters of one deployment share this value.
        self._slack_us = round(slack_seconds * _US)
        self._epoch_key = f"{prefix}:epoch"
        self._script = redis.register_script(_SCRIPT)
        # Tokens only need to be unique among live members of one window:
        # a random per-instance prefix plus a counter is unique across processes.
        self._token_prefix = os.urandom(6).hex() + "."
        self._next_token = 1

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def reserve(
        self, windows: Sequence[Window], *, now: float | None = None, horizon: float = 0.0
    ) -> Decision:
        return self.reserve_many([windows], now=now, horizon=horizon)[0]

    def reserve_many(
        self,
        requests: Sequence[Sequence[Window]],
        *,
        now: float | None = None,
        horizon: float = 0.0,
        jitter: Sequence[float] | None = None,
        after: Sequence[float] | None = None,
    ) -> list[Decision]:
        """Reserve for each request in order, in one round trip.

        Each request is all-or-nothing on its own; a later request sees the
        reservations of the earlier ones in the same call. With a `horizon`, a request is
        placed at the earliest moment within it that all its windows allow (plus its
        `jitter`, seconds, one per request); refused requests get the wait until that
        moment. `after` (seconds, one per request): a request is placed no sooner than
        that long after now.
        """
        if not requests:
            return []
        keys: list[str] = []
        spans: list[int] = []
        key_index: dict[tuple[Scope, str, float], int] = {}
        slots: list[int] = []
        slot_index: dict[Window, int] = {}
        body: list[int] = []
        plans: list[list[Window]] = []
        for windows in requests:
            binding = _binding_windows(windows)
            plans.append(binding)
            body.append(len(binding))
            for w in binding:
                s = slot_index.get(w)
                if s is None:
                    ident = (w.scope, w.key, w.seconds)
                    i = key_index.get(ident)
                    if i is None:
                        i = key_index[ident] = len(keys) + 1
                        keys.append(self._key(w))
                        spans.append(self.span_us(w))
                    slots.append(i)
                    slots.append(w.limit)
                    s = slot_index[w] = len(slot_index) + 1
                body.append(s)
        first = self._next_token
        self._next_token += len(requests)
        jitter_us = "" if not jitter else _csv([round(j * _US) for j in jitter])
        floors = "" if not after else _csv([max(round(t * _US), 0) for t in after])
        raw = self._run(
            "reserve",
            keys,
            spans,
            [
                self._token_prefix,
                first,
                _csv(slots),
                _csv(body),
                round(horizon * _US),
                jitter_us,
                floors,
            ],
            now,
            guarded=True,
        )
        decisions: list[Decision] = []
        for n, binding in enumerate(plans):
            allowed, wait_us, refused_at = raw[3 * n], raw[3 * n + 1], raw[3 * n + 2]
            if allowed:
                token = f"{self._token_prefix}{first + n}"
                decisions.append(Decision(True, 0.0, None, token, at=wait_us / _US))
            else:
                refused = binding[refused_at] if refused_at >= 0 else None
                decisions.append(Decision(False, max(wait_us, 0) / _US, refused, ""))
        return decisions

    def release(self, windows: Sequence[Window], token: str) -> None:
        """Give a reservation back (the message was never attempted)."""
        if not windows or not token:
            return
        unique = {(w.scope, w.key, w.seconds): w for w in windows}.values()
        keys = [self._key(w) for w in unique]
        self._run("release", keys, [self.span_us(w) for w in unique], [token], None)

    def move(
        self, windows: Sequence[Window], token: str, *, now: float | None = None
    ) -> Decision:
        """Moves a reservation to now when every window allows a send now without it (a
        send reached after its moment takes its place when it really goes); otherwise
        leaves it and says how long until they would."""
        return self.move_many([(windows, token)], now=now)[0]

    def move_many(
        self, moves: Sequence[tuple[Sequence[Window], str]], *, now: float | None = None
    ) -> list[Decision]:
        """`move` for several reservations, in order, in one round trip (each its own
        atomic call: a later one sees the earlier ones moved)."""
        if not moves:
            return []
        calls = []
        for windows, token in moves:
            binding = _binding_windows(windows)
            keys = [self._key(w) for w in binding]
            spans = [self.span_us(w) for w in binding]
            limits = _csv([w.limit for w in binding])
            calls.append(self._call("move", keys, spans, [token, limits], now))
        decisions = []
        for (_, token), raw in zip(moves, self._pipelined(calls), strict=True):
            if self._require_epoch and raw == [-1]:
                raise WindowsLost(self._epoch_key)
            allowed, value = raw
            if allowed:
                decisions.append(Decision(True, 0.0, None, token, at=value / _US))
            else:
                decisions.append(Decision(False, max(value, 0) / _US, None, ""))
        return decisions

    def used(self, windows: Sequence[Window], *, now: float | None = None) -> list[int]:
        if not windows:
            return []
        keys = [self._key(w) for w in windows]
        spans = [self.span_us(w) for w in windows]
        counts = self._run("used", keys, spans, [], now, guarded=True)
        return [int(c) for c in counts]

    def is_built(self) -> bool:
        return bool(self._redis.exists(self._epoch_key))

    def restore(
        self, windows: Mapping[WindowId, Sequence[tuple[str, float]]], *, epoch: str
    ) -> int:
        """Replaces every window with `windows` (members and their times in epoch
        seconds), then writes the epoch: until then reservations keep being refused, so
        none is granted against half-written windows. Returns the members written."""
        return self.restore_entries(
            {
                window: [f"{round(at * _US)} {member}" for member, at in members]
                for window, members in windows.items()
            },
            epoch=epoch,
        )

    def restore_entries(self, windows: Mapping[WindowId, Sequence[str]], *, epoch: str) -> int:
        """`restore` with each member given as "<time in integer microseconds> <member>"
        (members hold no spaces), written many windows per call: the rebuild of a day of
        a million sends builds each entry once and writes it to all of its windows."""
        stale = list(self._redis.scan_iter(match=f"{self._prefix}:*", count=1000))
        for chunk in range(0, len(stale), 1000):
            self._redis.unlink(*stale[chunk : chunk + 1000])
        keys: list[str] = []
        spans: list[int] = []
        counts: list[int] = []
        batch: list[str] = []
        written = 0
        for (scope, key, seconds), members in windows.items():
            name = f"{self._prefix}:{scope.value}:{key}:{_seconds(seconds)}"
            for start in range(0, len(members), _RESTORE_BATCH):
                part = members[start : start + _RESTORE_BATCH]
                keys.append(name)
                spans.append(self._span(seconds))
                counts.append(len(part))
                batch.extend(part)
                if len(batch) >= _RESTORE_BATCH:
                    written += self._restore_call(keys, spans, counts, batch)
                    keys, spans, counts, batch = [], [], [], []
        if keys:
            written += self._restore_call(keys, spans, counts, batch)
        self._redis.set(self._epoch_key, epoch)
        return written

    def _restore_call(
        self, keys: list[str], spans: list[int], counts: list[int], batch: list[str]
    ) -> int:
        return int(self._run("restore", keys, spans, [_csv(counts), " ".join(batch)], None))

    def frees_at(self, window: Window, *, now: float | None = None) -> float | None:
        """Epoch seconds when the window next has room; None when it has room now."""
        span = self.span_us(window)
        at = self._run("frees", [self._key(window)], [span], [window.limit], now)
        return None if int(at) < 0 else int(at) / _US

    def _key(self, w: Window) -> str:
        return f"{self._prefix}:{w.scope.value}:{w.key}:{_seconds(w.seconds)}"

    def span_us(self, window: Window) -> int:
        """What a window counts, in microseconds, slack included unless it is exact."""
        return round(window.seconds * _US) + (0 if window.exact else self._slack_us)

    def _span(self, seconds: float) -> int:
        return round(seconds * _US) + self._slack_us

    def _run(
        self,
        op: str,
        keys: list[str],
        spans: list[int],
        body: list[Any],
        now: float | None,
        *,
        guarded: bool = False,
    ) -> Any:
        if not guarded:
            clock = "" if now is None else round(now * _US)
            return self._script(keys=keys, args=[op, clock, _csv(spans), *body])
        keys, args = self._call(op, keys, spans, body, now)
        raw = self._script(keys=keys, args=args)
        if self._require_epoch and raw == [-1]:
            raise WindowsLost(self._epoch_key)
        return raw

    def _call(
        self, op: str, keys: list[str], spans: list[int], body: list[Any], now: float | None
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of a guarded call of the script."""
        clock = "" if now is None else round(now * _US)
        guard = "1" if self._require_epoch else "0"
        if self._require_epoch:
            keys = [*keys, self._epoch_key]
        return keys, [op, clock, _csv(spans), guard, *body]

    def _pipelined(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """The script's answers to `calls`, in one round trip.

        EVALSHA queued directly: redis-py's Script on a pipeline would first ask SCRIPT
        EXISTS, a second round trip on every call. A Redis that lost its script cache (a
        restart, SCRIPT FLUSH) answers NOSCRIPT to the calls it did not run; those run
        again once the script is loaded."""
        answers = self._evalsha_each(calls)
        lost = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if lost:
            self._script.sha = self._redis.script_load(self._script.script)
            for i, answer in zip(lost, self._evalsha_each([calls[i] for i in lost]), strict=True):
                answers[i] = answer
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _evalsha_each(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """One pipeline of EVALSHA calls; an error comes back in its call's place."""
        pipe = self._redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def _csv(numbers: list[int]) -> str:
    return ",".join(map(str, numbers))


def _seconds(seconds: float) -> str:
    """A window's span in its key: "60" for whole seconds, as every key was named before
    spans could be fractions (a pacing gap of 60/7 s)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _binding_windows(windows: Sequence[Window]) -> list[Window]:
    """One window per sorted set: when a request names the same set twice, the
    smaller limit is the one that binds (and a token is added to a set once)."""
    seen: dict[tuple[Scope, str, float], Window] = {}
    for w in windows:
        ident = (w.scope, w.key, w.seconds)
        kept = seen.get(ident)
        if kept is None or w.limit < kept.limit:
            seen[ident] = w
    if len(seen) == len(windows):
        return list(windows)
    return list(seen.values())
