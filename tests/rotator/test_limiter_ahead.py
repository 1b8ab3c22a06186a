"""Placing reservations ahead (a horizon), pacing, jitter, slack and moving a late one: the
limiter against real Redis, and a property that whatever is placed keeps every window."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotator.limiter import Limiter, Scope, Window
from tests import redis_urls

REDIS_URL = redis_urls.ROTATOR_URL
T0 = 1_700_000_000.0


def test_a_full_window_places_the_next_ones_when_the_oldest_leaves(redis_client) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 60, 3)
    placed = limiter.reserve_many([[w]] * 6, now=T0, horizon=90)
    assert [d.allowed for d in placed] == [True] * 6
    assert [d.at for d in placed] == [T0] * 3 + [T0 + 60] * 3
    # Beyond the horizon: refused, told to come back at its moment (then placed at once).
    late = limiter.reserve([w], now=T0, horizon=90)
    assert not late.allowed and late.retry_after == pytest.approx(60 + 60)
    assert late.refused == w


def test_a_pace_window_spreads_an_account_across_its_minute(redis_client) -> None:
    limiter = Limiter(redis_client)
    minute = Window(Scope.ACCOUNT, "1", 60, 6)
    pace = Window(Scope.ACCOUNT, "1", 10.0, 1)
    placed = limiter.reserve_many([[minute, pace]] * 7, now=T0, horizon=60)
    assert [d.at for d in placed] == [T0 + 10 * i for i in range(6)] + [T0 + 60]
    # Another account shares nothing: it starts now.
    other = Window(Scope.ACCOUNT, "2", 60, 6)
    assert limiter.reserve([other], now=T0, horizon=60).at == T0


def test_places_ahead_count_for_others_sharing_a_window(redis_client) -> None:
    """System window of 4: account 1 placed 3 ahead; account 2 gets the one place left now,
    then waits for the system window like everyone."""
    limiter = Limiter(redis_client)
    system = Window(Scope.SYSTEM, "", 60, 4)
    pace1 = Window(Scope.ACCOUNT, "1", 10.0, 1)
    first = limiter.reserve_many([[system, pace1]] * 3, now=T0, horizon=30)
    assert [d.at for d in first] == [T0, T0 + 10, T0 + 20]
    second = limiter.reserve_many([[system]] * 2, now=T0, horizon=120)
    assert [d.at for d in second] == [T0, T0 + 60]


def test_jitter_delays_a_place_and_horizon_zero_keeps_now_or_never(redis_client) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 60, 10)
    jittered = limiter.reserve_many([[w], [w]], now=T0, horizon=30, jitter=[0.0, 2.5])
    assert [d.at for d in jittered] == [T0, T0 + 2.5]
    full = Window(Scope.ACCOUNT, "2", 60, 1)
    assert limiter.reserve([full], now=T0).allowed
    assert not limiter.reserve([full], now=T0 + 1).allowed  # horizon 0: not placed ahead


def test_slack_lengthens_every_window(redis_client) -> None:
    limiter = Limiter(redis_client, slack_seconds=2)
    w = Window(Scope.ACCOUNT, "1", 60, 1)
    assert limiter.reserve([w], now=T0).allowed
    assert not limiter.reserve([w], now=T0 + 61).allowed
    assert limiter.reserve([w], now=T0 + 61, horizon=5).at == T0 + 62
    assert limiter.used([w], now=T0 + 61.5) == [2]


def test_move_takes_the_place_now_only_when_every_window_allows_it(redis_client) -> None:
    limiter = Limiter(redis_client)
    minute = Window(Scope.ACCOUNT, "1", 60, 2)
    a, b = limiter.reserve_many([[minute]] * 2, now=T0, horizon=0)
    # 70 s later both have left the window: a late send may take its place now.
    moved = limiter.move([minute], a.token, now=T0 + 70)
    assert moved.allowed and moved.at == T0 + 70
    assert limiter.used([minute], now=T0 + 70) == [1]
    # Two fresh sends fill the window at T0 + 71; b (left at T0) cannot come back now.
    c = limiter.reserve([minute], now=T0 + 71)
    assert c.allowed
    refused = limiter.move([minute], b.token, now=T0 + 72)
    assert not refused.allowed and refused.retry_after == pytest.approx(58)
    # A token inside the window is not counted against its own move.
    again = limiter.move([minute], c.token, now=T0 + 75)
    assert again.allowed and again.at == T0 + 75


class _CountingConnection(redis.Connection):
    """Counts what the client writes to Redis: one write per round trip."""

    writes = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        _CountingConnection.writes += 1
        super().send_packed_command(command, check_health)


def test_moves_of_a_group_take_one_round_trip_and_survive_a_lost_script_cache(
    redis_client,
) -> None:
    server = redis_client.connection_pool.connection_kwargs
    client = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=_CountingConnection,
            host=server["host"],
            port=server["port"],
            db=server["db"],
        )
    )
    limiter = Limiter(client)
    minute = Window(Scope.ACCOUNT, "1", 60, 3)
    placed = limiter.reserve_many([[minute]] * 3, now=T0, horizon=0)
    client.script_flush()  # as after a Redis restart: the script is unknown
    moved = limiter.move_many([([minute], d.token) for d in placed], now=T0 + 70)
    assert [d.allowed for d in moved] == [True] * 3
    assert [d.at for d in moved] == [T0 + 70] * 3
    assert limiter.used([minute], now=T0 + 70) == [3]
    # Once the script is known again: one write for the group's moves, no SCRIPT EXISTS.
    _CountingConnection.writes = 0
    again = limiter.move_many([([minute], d.token) for d in placed], now=T0 + 80)
    assert [d.at for d in again] == [T0 + 80] * 3
    assert _CountingConnection.writes == 1
    client.close()


# --- property: whatever is placed, no window of any span ever holds more than its limit ----


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limits=st.tuples(st.integers(1, 4), st.integers(1, 8)),
    pace=st.sampled_from([None, 2.5, 7.0]),
    steps=st.lists(
        st.tuples(st.integers(0, 20_000), st.integers(1, 4), st.floats(0, 3)),
        min_size=1,
        max_size=30,
    ),
    horizon=st.sampled_from([0.0, 5.0, 30.0]),
    slack=st.sampled_from([0.0, 1.0]),
)
def test_placed_reservations_keep_every_window(
    limits: tuple[int, int],
    pace: float | None,
    steps: list[tuple[int, int, float]],
    horizon: float,
    slack: float,
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    limiter = Limiter(client, prefix=f"ahead:{uuid.uuid4().hex}", slack_seconds=slack)
    spans = (10, 30)
    windows = [Window(Scope.ACCOUNT, "1", s, lim) for s, lim in zip(spans, limits, strict=True)]
    if pace is not None:
        windows.append(Window(Scope.ACCOUNT, "1", pace, 1))
    placed: list[float] = []
    now = T0
    try:
        for advance_ms, batch, jitter in steps:
            now += advance_ms / 1000
            decisions = limiter.reserve_many(
                [windows] * batch, now=now, horizon=horizon, jitter=[jitter] * batch
            )
            for d in decisions:
                if d.allowed:
                    assert now - 1e-6 <= d.at <= now + horizon + 1e-6
                    placed.append(d.at)
                else:
                    assert d.retry_after > 0
        placed.sort()
        for w in windows:
            span = w.seconds + slack
            for i, start in enumerate(placed):
                inside = sum(1 for t in placed[i:] if t < start + span - 1e-6)
                assert inside <= w.limit, (w, start, placed)
    finally:
        for key in client.scan_iter(match=f"{limiter._prefix}:*"):
            client.delete(key)


def test_an_exact_window_is_counted_without_the_slack(redis_client) -> None:
    limiter = Limiter(redis_client, slack_seconds=2)
    pace = Window(Scope.ACCOUNT, "1", 0.5, 1, exact=True)
    placed = limiter.reserve_many([[pace]] * 3, now=T0, horizon=5)
    assert [d.at for d in placed] == [T0, T0 + 0.5, T0 + 1.0]


def test_a_window_outlives_its_latest_place_by_its_span(redis_client) -> None:
    """Places ahead keep their window alive: a pace window of 10 s holding a place 30 s ahead
    lives 40 s, and a later write of an earlier place never shortens that."""
    limiter = Limiter(redis_client)
    pace = Window(Scope.ACCOUNT, "1", 10.0, 1, exact=True)
    placed = limiter.reserve_many([[pace]] * 4, horizon=30)
    assert placed[-1].at - placed[0].at == pytest.approx(30, abs=0.01)
    ttl = redis_client.pttl(limiter._key(pace)) / 1000
    assert 39 < ttl <= 40
    moved = limiter.move([Window(Scope.ACCOUNT, "9", 10.0, 1, exact=True)], "none")
    assert moved.allowed
    limiter.release([pace], placed[0].token)
    assert limiter.reserve([Window(Scope.ACCOUNT, "1", 60, 100)]).allowed
    assert 38 < redis_client.pttl(limiter._key(pace)) / 1000 <= 40


def test_a_request_is_placed_no_sooner_than_its_floor(redis_client) -> None:
    limiter = Limiter(redis_client)
    w = Window(Scope.ACCOUNT, "1", 60, 10)
    placed = limiter.reserve_many([[w], [w]], now=T0, horizon=30, after=[12, 0])
    assert [d.at for d in placed] == [T0 + 12, T0]
    beyond = limiter.reserve_many([[w]], now=T0, horizon=30, after=[45])
    assert not beyond[0].allowed and beyond[0].retry_after == pytest.approx(45)
