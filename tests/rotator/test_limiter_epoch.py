"""The limiter notices that Redis lost its windows (the epoch key is gone) on the very
next reservation, and refuses until `restore` has rebuilt them."""

from __future__ import annotations

import pytest
import redis

from rotator.limiter import Limiter, Scope, Window, WindowsLost

T0 = 1_700_000_000.0
DAY = Window(Scope.ACCOUNT, "7", 86400, 3)
MINUTE = Window(Scope.SYSTEM, "*", 60, 100)


def test_a_guarded_limiter_refuses_until_the_windows_are_built(redis_client: redis.Redis):
    limiter = Limiter(redis_client, require_epoch=True)
    with pytest.raises(WindowsLost):
        limiter.reserve([DAY], now=T0)
    with pytest.raises(WindowsLost):
        limiter.used([DAY], now=T0)
    assert redis_client.keys("sf:lim:account*") == []  # the refused call wrote nothing
    limiter.restore({}, epoch="e1")
    assert limiter.is_built()
    assert limiter.reserve([DAY], now=T0).allowed


def test_a_flush_is_noticed_on_the_next_reservation(redis_client: redis.Redis):
    limiter = Limiter(redis_client, require_epoch=True)
    limiter.restore({}, epoch="e1")
    assert limiter.reserve([DAY, MINUTE], now=T0).allowed
    redis_client.flushdb()
    with pytest.raises(WindowsLost):
        limiter.reserve([DAY, MINUTE], now=T0 + 1)


def test_an_unguarded_limiter_answers_from_whatever_redis_holds(redis_client: redis.Redis):
    limiter = Limiter(redis_client)
    assert limiter.reserve([DAY], now=T0).allowed
    assert not limiter.is_built()


def test_restore_replaces_every_window_and_the_rebuilt_ones_bind(redis_client: redis.Redis):
    limiter = Limiter(redis_client, require_epoch=True)
    limiter.restore({}, epoch="e1")
    stale = Window(Scope.RECIPIENT_DOMAIN, "1:gone.example", 86400, 5)
    assert limiter.reserve([stale], now=T0).allowed
    written = limiter.restore(
        {(Scope.ACCOUNT, "7", 86400): [("rb:1", T0 - 3600), ("rb:2", T0 - 60), ("tok.9", T0)]},
        epoch="e2",
    )
    assert written == 3
    assert limiter.used([DAY, stale], now=T0 + 1) == [3, 0]
    refused = limiter.reserve([DAY], now=T0 + 1)
    # Full until the oldest rebuilt member leaves its day.
    assert not refused.allowed and refused.retry_after == pytest.approx(86400 - 3600 - 1, abs=1)
    # A rebuilt in-flight reservation keeps its token: releasing it frees its place.
    limiter.release([DAY], "tok.9")
    assert limiter.reserve([DAY], now=T0 + 2).allowed


def test_restore_entries_writes_many_windows_across_calls(redis_client: redis.Redis):
    limiter = Limiter(redis_client, require_epoch=True)
    big = (Scope.ACCOUNT, "1", 86400)
    small = [(Scope.RECIPIENT_DOMAIN, f"1:d{i}.example", 86400) for i in range(500)]
    at = round(T0 * 1_000_000)
    windows = {big: [f"{at + i} rb:{i}" for i in range(30_000)]}  # more than one call
    windows.update({w: [f"{at} rb:{i}"] for i, w in enumerate(small)})
    assert limiter.restore_entries(windows, epoch="e") == 30_500
    assert limiter.is_built()
    counted = limiter.used(
        [Window(Scope.ACCOUNT, "1", 86400, 10), Window(*small[7], 20)], now=T0 + 60
    )
    assert counted == [30_000, 1]
    ttl = redis_client.pttl("sf:lim:account:1:86400")
    assert 86_000_000 < ttl <= 86_400_000  # each window expires after its span
