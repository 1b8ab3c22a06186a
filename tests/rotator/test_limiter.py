"""The sliding-window limiter against real Redis (DB 14)."""

from __future__ import annotations

import multiprocessing
import uuid
from multiprocessing.synchronize import Barrier

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotator.limiter import Limiter, Scope, Window
from tests import redis_urls

REDIS_URL = redis_urls.ROTATOR_URL  # the DB the redis_client fixture flushes
T0 = 1_700_000_000.0


def members(client: redis.Redis, limiter: Limiter, window: Window) -> int:
    return int(client.zcard(limiter._key(window)))


def test_allows_up_to_the_limit_in_every_window_then_refuses(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "7", 60, 3)
    assert [limiter.reserve([w], now=T0 + i).allowed for i in range(4)] == [True, True, True, False]
    assert limiter.used([w], now=T0 + 3) == [3]


def test_refusal_in_one_scope_writes_nothing_in_the_others(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    system = Window(Scope.SYSTEM, "", 60, 100)
    account = Window(Scope.ACCOUNT, "7", 86400, 1)
    domain = Window(Scope.RECIPIENT_DOMAIN, "example.org", 86400, 20)
    assert limiter.reserve([system, account, domain], now=T0).allowed
    refused = limiter.reserve([system, account, domain], now=T0 + 1)
    assert not refused.allowed and refused.refused == account and refused.token == ""
    assert limiter.used([system, account, domain], now=T0 + 1) == [1, 1, 1]
    assert members(redis_client, limiter, system) == 1


def test_exact_window_edges(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.SENDING_DOMAIN, "example.com", 60, 3)
    for t in (T0, T0 + 10, T0 + 20):
        assert limiter.reserve([w], now=t).allowed
    # [T0, T0 + 60): the 4th is refused until the oldest leaves at exactly T0 + 60.
    just_before = limiter.reserve([w], now=T0 + 59.999)
    assert not just_before.allowed
    assert just_before.retry_after == pytest.approx(0.001, abs=1e-6)
    assert limiter.reserve([w], now=T0 + 60).allowed
    again = limiter.reserve([w], now=T0 + 60)
    assert not again.allowed and again.retry_after == pytest.approx(10.0)
    assert limiter.used([w], now=T0 + 60) == [3]


def test_retry_after_is_per_scope_and_the_max_across_scopes(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    minute = Window(Scope.SYSTEM, "", 60, 1)
    day = Window(Scope.ACCOUNT, "3", 86400, 1)
    loose = Window(Scope.RECIPIENT_DOMAIN, "example.org", 60, 10)
    assert limiter.reserve([minute, day, loose], now=T0).allowed

    only_minute = limiter.reserve([minute, loose], now=T0 + 15)
    assert (only_minute.retry_after, only_minute.refused) == (45.0, minute)
    only_day = limiter.reserve([day, loose], now=T0 + 15)
    assert (only_day.retry_after, only_day.refused) == (86385.0, day)
    both = limiter.reserve([minute, day, loose], now=T0 + 15)
    assert (both.allowed, both.retry_after, both.refused) == (False, 86385.0, day)


def test_retry_after_counts_from_the_entry_that_must_leave(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.CAMPAIGN, "9", 100, 2)
    for t in (T0, T0 + 30, T0 + 40):
        limiter.reserve([w], now=t)  # the third is refused: two are inside
    assert limiter.reserve([w], now=T0 + 50).retry_after == 50.0  # T0 leaves at T0 + 100
    smaller = Window(Scope.CAMPAIGN, "9", 100, 1)  # same set, tighter limit
    assert limiter.reserve([smaller], now=T0 + 50).retry_after == 80.0  # T0 + 30 must leave


def test_release_gives_capacity_back(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    windows = [Window(Scope.ACCOUNT, "1", 60, 1), Window(Scope.SYSTEM, "", 86400, 5)]
    first = limiter.reserve(windows, now=T0)
    assert not limiter.reserve(windows, now=T0 + 1).allowed
    limiter.release(windows, first.token)
    assert limiter.used(windows, now=T0 + 1) == [0, 0]
    assert limiter.reserve(windows, now=T0 + 1).allowed


def test_release_of_one_token_leaves_the_others(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 60, 5)
    tokens = [limiter.reserve([w], now=T0).token for _ in range(3)]
    assert len(set(tokens)) == 3
    limiter.release([w], tokens[1])
    assert limiter.used([w], now=T0) == [2]


def test_zero_limit_refuses_for_the_whole_window(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    closed = Window(Scope.ACCOUNT, "5", 86400, 0)
    other = Window(Scope.SYSTEM, "", 60, 100)
    decision = limiter.reserve([other, closed], now=T0)
    assert (decision.allowed, decision.retry_after, decision.refused) == (False, 86400.0, closed)
    assert limiter.used([other], now=T0) == [0]
    assert limiter.frees_at(closed, now=T0) == T0 + 86400


def test_reserve_many_sees_its_own_earlier_reservations(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    account = Window(Scope.ACCOUNT, "1", 60, 2)
    other = Window(Scope.ACCOUNT, "2", 60, 2)
    decisions = limiter.reserve_many([[account], [account], [account], [other]], now=T0)
    assert [d.allowed for d in decisions] == [True, True, False, True]
    assert decisions[2].retry_after == 60.0 and decisions[2].refused == account
    assert len({d.token for d in decisions if d.allowed}) == 3
    assert limiter.used([account, other], now=T0) == [2, 1]
    assert limiter.reserve_many([], now=T0) == []


def test_reserve_many_each_request_is_all_or_nothing(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    shared = Window(Scope.SYSTEM, "", 60, 10)
    tight = Window(Scope.RECIPIENT_DOMAIN, "example.org", 86400, 1)
    decisions = limiter.reserve_many([[shared, tight], [shared, tight], [shared]], now=T0)
    assert [d.allowed for d in decisions] == [True, False, True]
    assert limiter.used([shared, tight], now=T0) == [2, 1]


def test_used_and_frees_at(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 60, 2)
    assert limiter.frees_at(w, now=T0) is None
    limiter.reserve([w], now=T0)
    limiter.reserve([w], now=T0 + 5)
    assert limiter.used([w], now=T0 + 5) == [2]
    assert limiter.frees_at(w, now=T0 + 5) == T0 + 60
    assert limiter.used([w], now=T0 + 61) == [1]
    assert limiter.frees_at(w, now=T0 + 61) is None
    assert limiter.used([], now=T0) == []


def test_uses_the_redis_clock_by_default(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 3600, 1)
    assert limiter.reserve([w]).allowed
    refused = limiter.reserve([w])
    assert not refused.allowed and 3590 < refused.retry_after <= 3600
    seconds, micros = redis_client.time()
    frees = limiter.frees_at(w)
    assert frees is not None and abs(frees - (seconds + micros / 1e6 + refused.retry_after)) < 5


def test_windows_with_the_same_key_and_length_share_a_set(redis_client: redis.Redis) -> None:
    limiter = Limiter(redis_client)
    a = Window(Scope.ACCOUNT, "1", 60, 5)
    assert limiter.reserve([a, a], now=T0).allowed
    assert limiter.used([a], now=T0) == [1]


def _race(
    barrier: Barrier, prefix: str, attempts: int, results: multiprocessing.Queue[int]
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limiter = Limiter(client, prefix=prefix)
    windows = [
        Window(Scope.SYSTEM, "", 3600, 37),
        Window(Scope.ACCOUNT, "1", 86400, 50),
        Window(Scope.RECIPIENT_DOMAIN, "example.org", 86400, 45),
    ]
    barrier.wait()
    allowed = 0
    for n in range(attempts):
        if n % 2:
            allowed += sum(d.allowed for d in limiter.reserve_many([windows, windows]))
        else:
            allowed += limiter.reserve(windows).allowed
    results.put(allowed)


def test_processes_racing_never_exceed_any_window(redis_client: redis.Redis) -> None:
    ctx = multiprocessing.get_context("fork")
    prefix = f"race:{uuid.uuid4().hex}"
    barrier = ctx.Barrier(4)
    results: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(barrier, prefix, 40, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    allowed = sum(results.get(timeout=5) for _ in procs)
    limiter = Limiter(redis_client, prefix=prefix)
    system = Window(Scope.SYSTEM, "", 3600, 37)
    account = Window(Scope.ACCOUNT, "1", 86400, 50)
    assert allowed == 37
    assert members(redis_client, limiter, system) == 37
    assert members(redis_client, limiter, account) == 37


# --- property: the limiter agrees with a brute-force model of sliding windows ----------

SPANS = (10, 30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.tuples(st.integers(0, 4), st.integers(1, 6)),
    steps=st.lists(
        st.tuples(st.integers(0, 8000), st.integers(1, 3), st.booleans()),
        min_size=1,
        max_size=40,
    ),
)
def test_matches_a_brute_force_model(
    limits: tuple[int, int], steps: list[tuple[int, int, bool]]
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limiter = Limiter(client, prefix=f"prop:{uuid.uuid4().hex}")
    windows = [Window(Scope.ACCOUNT, "1", s, lim) for s, lim in zip(SPANS, limits, strict=True)]
    taken: list[int] = []  # microseconds of allowed reservations
    now_us = int(T0) * 1_000_000
    try:
        for advance_ms, batch, as_many in steps:
            now_us += advance_ms * 1000
            now = now_us / 1_000_000
            if as_many:
                decisions = limiter.reserve_many([windows] * batch, now=now)
            else:
                decisions = [limiter.reserve(windows, now=now) for _ in range(batch)]
            for decision in decisions:
                waits = []
                for span, lim in zip(SPANS, limits, strict=True):
                    inside = sorted(t for t in taken if t > now_us - span * 1_000_000)
                    if lim <= 0:
                        waits.append(span * 1_000_000)
                    elif len(inside) >= lim:
                        waits.append(inside[len(inside) - lim] + span * 1_000_000 - now_us)
                assert decision.allowed == (not waits)
                if waits:
                    assert decision.retry_after == pytest.approx(max(waits) / 1e6, abs=1e-6)
                else:
                    taken.append(now_us)
            for span, lim in zip(SPANS, limits, strict=True):
                assert sum(1 for t in taken if t > now_us - span * 1_000_000) <= lim
    finally:
        for w in windows:
            client.delete(limiter._key(w))
        client.close()
