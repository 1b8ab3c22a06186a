"""Beat: the schedule table by task name, daily jobs at their hour in WARMUP_TIMEZONE
(across daylight saving time), and only one scheduler acting at a time: two real
`celery -A worker beat` processes against one Redis enqueue what one would, from one
process; when it dies the other takes over; a Redis that loses its data (FLUSHDB) costs a
beat neither its lock nor its schedule for long."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from celery import Celery

from tests import redis_urls
from worker.beat import SendfleetEntry
from worker.celery_app import DISPATCH_QUEUE, celery_config
from worker.schedule import ZonedCrontab, beat_schedule

ROOT = Path(__file__).resolve().parents[1]
BERLIN = ZoneInfo("Europe/Berlin")
INTERVAL = 0.5  # DISPATCH_INTERVAL_SECONDS of the beat processes
LOCK_TIMEOUT = 3


def test_the_table_names_every_job_by_task(settings):
    table = beat_schedule(settings)
    assert {name: entry["task"] for name, entry in table.items()} == {
        "dispatch": "sendfleet.dispatch",
        "recover": "sendfleet.recover",
        "health-checks": "sendfleet.health_checks",
        "resume-checks": "sendfleet.resume_checks",
        "guards": "sendfleet.guards",
        "compact-counts": "sendfleet.compact_counts",
        "blacklist-check": "sendfleet.blacklist_check",
        "sender-auth-check": "sendfleet.sender_auth_check",
        "warmup-ramp": "sendfleet.warmup_ramp",
        "daily-summary": "sendfleet.daily_summary",
    }
    assert table["recover"]["schedule"] == settings.recovery_interval_seconds
    assert table["health-checks"]["schedule"] == settings.health_check_interval_seconds
    assert table["guards"]["schedule"] == 60
    ramp = table["warmup-ramp"]["schedule"]
    assert isinstance(ramp, ZonedCrontab) and ramp.zone == settings.warmup_timezone
    assert ramp.hour == {settings.warmup_hour} and ramp.minute == {0}
    for entry in table.values():
        assert entry["options"]["expires"] > 0


@pytest.mark.parametrize(
    ("last_run", "next_run"),
    [
        # Winter: 06:00 in Berlin is 05:00 UTC; summer: 04:00 UTC (DST began 29 March).
        (datetime(2026, 3, 27, 5, 0, 1, tzinfo=UTC), datetime(2026, 3, 28, 5, 0, tzinfo=UTC)),
        (datetime(2026, 3, 28, 5, 0, 1, tzinfo=UTC), datetime(2026, 3, 29, 4, 0, tzinfo=UTC)),
        (datetime(2026, 3, 29, 4, 0, 1, tzinfo=UTC), datetime(2026, 3, 30, 4, 0, tzinfo=UTC)),
    ],
)
def test_the_daily_ramp_runs_at_its_hour_in_its_time_zone(last_run, next_run):
    app = Celery(set_as_current=False)
    app.conf.timezone = "UTC"
    schedule = ZonedCrontab(zone="Europe/Berlin", hour=6, minute=0, app=app,
                            nowfun=lambda: last_run)  # fmt: skip
    assert last_run + schedule.remaining_estimate(last_run) == next_run
    assert next_run.astimezone(BERLIN).hour == 6


def test_redbeat_entries_keep_their_time_zone_when_read_back(settings):
    """Redbeat stores a crontab as its fields only: read back plainly it would be UTC's."""
    from redbeat.schedulers import RedBeatSchedulerEntry

    app = Celery(set_as_current=False)
    config = celery_config(settings.model_copy(update={"warmup_timezone": "Europe/Berlin"}))
    config["redbeat_redis_url"] = redis_urls.BROKER_URL
    app.config_from_object(config)
    redis.Redis.from_url(redis_urls.BROKER_URL).flushdb()
    static = app.conf.beat_schedule["warmup-ramp"]
    SendfleetEntry(app=app, name="warmup-ramp", **static).save()
    key = SendfleetEntry.generate_key(app, "warmup-ramp")
    assert str(SendfleetEntry.from_key(key, app=app).schedule.tz) == "Europe/Berlin"
    assert str(RedBeatSchedulerEntry.from_key(key, app=app).schedule.tz) == "UTC"


# --- two real beat processes ----------------------------------------------------------------


class Beats:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.broker = redis.Redis.from_url(redis_urls.BROKER_URL)

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"beat-{len(self.processes)}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "beat", "--loglevel", "INFO"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def enqueued(self) -> list[dict[str, Any]]:
        """Every task message waiting in the dispatch queue (no worker consumes it)."""
        raw = self.broker.lrange(DISPATCH_QUEUE, 0, -1)
        return [json.loads(m)["headers"] for m in reversed(raw)]  # oldest first

    def origins(self, task: str, since: int = 0) -> Counter[int]:
        """Messages of `task` per publishing process id (Celery's origin: gen<pid>@host)."""
        found = [h for h in self.enqueued()[since:] if h["task"] == task]
        return Counter(int(h["origin"].split("@")[0].removeprefix("gen")) for h in found)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture
def beats(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Beats]:
    redis.Redis.from_url(redis_urls.BROKER_URL).flushdb()
    env = {
        **os.environ,
        **settings_env,
        "CELERY_BROKER_URL": redis_urls.BROKER_URL,
        "DISPATCH_INTERVAL_SECONDS": str(INTERVAL),
        "RECOVERY_INTERVAL_SECONDS": "1",
        "BEAT_LOCK_TIMEOUT_SECONDS": str(LOCK_TIMEOUT),
        "LOG_LEVEL": "INFO",
    }
    running = Beats(env, tmp_path)
    yield running
    running.stop()


def _wait_for(condition: Any, seconds: float, beats: Beats) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {seconds} s:\n{beats.logs()[-4000:]}")


def test_two_beat_processes_enqueue_as_one_and_the_second_takes_over(beats: Beats):
    first = beats.start()
    _wait_for(lambda: beats.origins("sendfleet.dispatch"), 30, beats)
    second = beats.start()
    time.sleep(3)  # the second is up and waiting for the lock
    start = len(beats.enqueued())
    window = 6.0
    time.sleep(window)
    assert first.poll() is None and second.poll() is None, beats.logs()[-3000:]
    in_window = beats.origins("sendfleet.dispatch", since=start)
    assert list(in_window) == [first.pid], in_window  # only the lock's holder enqueued
    # One scheduler's worth (a tick every 0.5 s), not two: 12 in 6 s, give or take a tick.
    assert window / INTERVAL - 2 <= in_window[first.pid] <= window / INTERVAL + 2
    assert beats.origins("sendfleet.recover", since=start) .keys() == {first.pid}
    # Nothing daily was due: beat enqueues only what its schedule says.
    assert not beats.origins("sendfleet.warmup_ramp") and not beats.origins("sendfleet.guards")

    os.killpg(first.pid, signal.SIGKILL)  # no clean exit: the lock is left to expire
    first.wait(10)
    killed_at = len(beats.enqueued())
    _wait_for(lambda: beats.origins("sendfleet.dispatch", since=killed_at), LOCK_TIMEOUT + 10,
              beats)  # fmt: skip
    time.sleep(2)
    assert set(beats.origins("sendfleet.dispatch", since=killed_at)) == {second.pid}
    assert second.poll() is None


def test_a_beat_keeps_scheduling_after_redis_loses_its_data(beats: Beats):
    beat = beats.start()
    _wait_for(lambda: beats.origins("sendfleet.dispatch"), 30, beats)
    beats.broker.flushdb()  # the lock, the schedule and the queue are gone
    _wait_for(lambda: beats.origins("sendfleet.dispatch"), 10, beats)
    assert beat.poll() is None, beats.logs()[-3000:]
    assert beats.broker.exists("sf:beat::lock")
    assert "beat.schedule_restored" in beats.logs() or "beat.lock_lost" in beats.logs()
