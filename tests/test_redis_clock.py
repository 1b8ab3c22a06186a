"""A send process waits for each send's moment by Redis's clock, the one the limiter places
moments on (worker.jobs.redis_clock), not by its host's: these tests set the host clock
(time.time) off by seconds, and the sends still wait until Redis's TIME reaches their
moments. Real Redis throughout."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from tests.e2e.private_stores import free_port
from worker.jobs import send_slots
from worker.jobs.redis_clock import RedisClock
from worker.jobs.send_slots import Held, Slots, Timing

REAL_TIME = time.time


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


@pytest.fixture
def host_clock_off(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Sets this host's clock `seconds` away from the true time (Redis runs here, on it)."""

    def set_off(seconds: float) -> None:
        monkeypatch.setattr(time, "time", lambda: REAL_TIME() + seconds)

    return set_off


def slots_at(at: float, clock: RedisClock | None) -> Slots:
    return Slots({1: Held(at, "token", "example.org", 7)}, 1.0, clock)


@pytest.mark.parametrize("off", [7.5, -7.5])
def test_the_offset_is_redis_time_less_this_hosts(redis_client, host_clock_off, off) -> None:
    host_clock_off(off)
    clock = RedisClock(redis_client)
    assert clock.offset() == pytest.approx(-off, abs=0.05)
    assert clock.now() == pytest.approx(redis_now(redis_client), abs=0.05)
    assert clock.to_local(redis_now(redis_client)) == pytest.approx(time.time(), abs=0.05)


def test_a_fast_host_clock_does_not_make_a_send_go_early(redis_client, host_clock_off) -> None:
    host_clock_off(5.0)  # by its own clock, the moment passed 4 s ago
    clock = RedisClock(redis_client)
    at = redis_now(redis_client) + 1.0
    assert slots_at(at, clock).timing(1) is Timing.NOW
    assert redis_now(redis_client) >= at - 0.01


def test_a_slow_host_clock_neither_sends_late_nor_puts_the_send_off(
    redis_client, host_clock_off
) -> None:
    host_clock_off(-10.0)  # by its own clock, the moment is 11 s away: too far to wait
    clock = RedisClock(redis_client)
    at = redis_now(redis_client) + 1.0
    slots = slots_at(at, clock)
    assert slots.delay(1) == pytest.approx(1.0, abs=0.05)
    assert slots.timing(1) is Timing.NOW
    assert at - 0.01 <= redis_now(redis_client) < at + 0.5


def test_a_send_put_off_gets_an_eta_on_the_clock_of_the_worker_that_keeps_it(
    redis_client, host_clock_off, monkeypatch
) -> None:
    host_clock_off(-30.0)
    sent: list[dict[str, Any]] = []

    class Broker:
        def send_task(self, name: str, **options: Any) -> None:
            sent.append({"name": name, **options})

    monkeypatch.setattr(send_slots, "current_celery", Broker())
    clock = RedisClock(redis_client)
    at = redis_now(redis_client) + 120
    slots_at(at, clock).publish_later(3, [1])
    [task] = sent
    assert task["name"] == "sendfleet.send_batch" and task["args"] == [3, [1]]
    assert task["eta"].timestamp() == pytest.approx(at - 30.0, abs=0.05)


def test_the_offset_is_measured_again_after_its_refresh(redis_client, host_clock_off) -> None:
    clock = RedisClock(redis_client, refresh_seconds=0.2)
    host_clock_off(3.0)
    assert clock.offset() == pytest.approx(-3.0, abs=0.05)
    host_clock_off(-2.0)  # NTP stepped the clock
    assert clock.offset() == pytest.approx(-3.0, abs=0.05)  # until the refresh
    time.sleep(0.25)
    assert clock.offset() == pytest.approx(2.0, abs=0.05)


def test_while_redis_cannot_be_reached_the_last_offset_stands(redis_client, host_clock_off):
    host_clock_off(4.0)
    clock = RedisClock(redis_client, refresh_seconds=0.0)
    assert clock.offset() == pytest.approx(-4.0, abs=0.05)
    clock._redis = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    assert clock.offset() == pytest.approx(-4.0, abs=0.05)
    never = RedisClock(redis.Redis(port=free_port(), socket_connect_timeout=0.5))
    assert never.offset() == 0.0  # no measurement yet: this host's clock


@pytest.mark.parametrize("off", [0.0, -1.5, 5.0])
def test_a_send_past_its_moment_by_more_than_the_tolerance_is_late_whatever_the_clock(
    redis_client, host_clock_off, off
) -> None:
    # Late on Redis's clock is late: sending it now could crowd a window at the server,
    # whether the queue backed up or this host's clock is behind.
    host_clock_off(off)
    clock = RedisClock(redis_client)
    assert slots_at(redis_now(redis_client) - 1.5, clock).timing(1) is Timing.LATE
    assert slots_at(redis_now(redis_client) - 0.5, clock).timing(1) is Timing.NOW


def test_a_host_clock_off_by_a_second_or_more_alerts_the_on_call_once(
    app, redis_client, host_clock_off, monkeypatch
) -> None:
    from worker.jobs import alerts, redis_clock

    told: list[tuple[str, str]] = []
    monkeypatch.setattr(
        alerts.current_celery, "send_task", lambda name, args, queue: told.append(tuple(args))
    )
    settings = app.extensions["settings"].model_copy(
        update={"telegram_bot_token": "1:x", "telegram_chat_id": "-100"}
    )
    monkeypatch.setitem(app.extensions, "settings", settings)
    host_clock_off(-3.0)
    with app.app_context():
        app.extensions.pop("redis_clock", None)
        clock = redis_clock.clock_of(app.extensions)
        assert clock.offset() == pytest.approx(3.0, abs=0.05)
        clock._measure()  # measured again: deduplicated per host
        app.extensions.pop("redis_clock", None)
    [(text, chat)] = told
    assert chat == "-100"
    assert "3.0 s behind Redis's" in text and "NTP" in text
    host = redis_clock.socket.gethostname()
    assert redis_client.exists(f"sf:alert:clock-offset:{host}")


def test_a_clock_within_a_second_alerts_no_one(app, redis_client, host_clock_off) -> None:
    from worker.jobs import redis_clock

    host_clock_off(0.4)
    with app.app_context():
        app.extensions.pop("redis_clock", None)
        assert redis_clock.clock_of(app.extensions).offset() == pytest.approx(-0.4, abs=0.05)
        app.extensions.pop("redis_clock", None)
    assert not redis_client.keys("sf:alert:clock-offset:*")
