"""Beat's own app (worker/beat_app.py, `ops/entrypoint.sh beat`): it loads the settings and
the schedule without the Flask app, and a real beat started through it schedules exactly what
worker/schedule.py says, as the full app's beat (`celery -A worker beat`) does: the same
entries, by name and task, with the same schedules and options, published to the dispatch
queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from app.settings import Settings
from tests import redis_urls
from worker.celery_app import DISPATCH_QUEUE
from worker.schedule import beat_schedule

ROOT = Path(__file__).resolve().parents[1]
STATICS = "sf:beat::statics"  # redbeat's set of the entries from the config (redbeat_key_prefix)
BEAT_ENV = {
    "CELERY_BROKER_URL": redis_urls.BROKER_URL,
    "DISPATCH_INTERVAL_SECONDS": "0.5",
    "RECOVERY_INTERVAL_SECONDS": "1",
    "RESUME_CHECK_INTERVAL_SECONDS": "1",
    "WARMUP_TIMEZONE": "Europe/Berlin",
    "LOG_LEVEL": "INFO",
}
# What beat needs is settings, Celery and redbeat; none of this.
WEB_STACK = (
    *("flask", "flask_sqlalchemy", "sqlalchemy", "jinja2", "flask_smorest", "alembic"),
    *("app.models", "app.api", "app.web", "app.services", "worker.tasks", "worker.jobs"),
)


@pytest.fixture
def beat_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **settings_env, **BEAT_ENV}
    env.pop("SENTRY_DSN", None)
    return env


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_urls.BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


def test_the_beat_app_loads_settings_and_schedule_without_the_web_stack(beat_env):
    probe = (
        "import json, sys\n"
        "import worker.beat_app\n"
        "app = worker.beat_app.celery\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'scheduler': app.conf.beat_scheduler,"
        " 'tasks': {n: e['task'] for n, e in app.conf.beat_schedule.items()},"
        " 'broker': app.conf.broker_url}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=beat_env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    found = json.loads(out.stdout)
    packages = tuple(f"{name}." for name in WEB_STACK)
    loaded = [m for m in found["modules"] if m in WEB_STACK or m.startswith(packages)]
    assert not loaded, loaded
    assert found["scheduler"] == "worker.beat:SendfleetScheduler"
    assert found["broker"] == redis_urls.BROKER_URL
    settings = Settings(**{k.lower(): v for k, v in beat_env.items() if k.isupper()})
    assert found["tasks"] == {n: e["task"] for n, e in beat_schedule(settings).items()}


def _run_beat(argv: list[str], env: dict[str, str], log: Path, broker: redis.Redis) -> None:
    """Runs a beat until it has written its schedule and published each frequent entry."""
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = {m["headers"]["task"] for m in _messages(broker)}
            if {"sendfleet.dispatch", "sendfleet.recover", "sendfleet.resume_checks"} <= tasks:
                return
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"beat published too little:\n{log.read_text()[-3000:]}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def _messages(broker: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in broker.lrange(DISPATCH_QUEUE, 0, -1)]


def _definitions(broker: redis.Redis) -> dict[str, dict[str, Any]]:
    names = sorted(n.decode() for n in broker.smembers(STATICS))
    return {n: json.loads(broker.hget(f"sf:beat:{n}", "definition")) for n in names}


def test_beat_through_its_own_app_schedules_what_the_full_app_did(beat_env, broker, tmp_path):
    slim = {**beat_env, "BEAT_SCHEDULE_FILE": str(tmp_path / "slim-schedule")}
    _run_beat(["bash", "ops/entrypoint.sh", "beat"], slim, tmp_path / "slim.log", broker)
    ours, published = _definitions(broker), _messages(broker)
    broker.flushdb()
    full = [sys.executable, "-m", "celery", "-A", "worker", "beat",
            "-s", str(tmp_path / "full-schedule"), "--loglevel", "INFO"]  # fmt: skip
    _run_beat(full, beat_env, tmp_path / "full.log", broker)
    theirs = _definitions(broker)

    settings = Settings(**{k.lower(): v for k, v in beat_env.items() if k.isupper()})
    table = beat_schedule(settings)
    assert {n: d["task"] for n, d in ours.items()} == {n: e["task"] for n, e in table.items()}
    assert ours == theirs  # schedules (the daily ones' hours too), options, arguments
    assert ours["warmup-ramp"]["schedule"]["hour"] == settings.warmup_hour
    assert ours["dispatch"]["schedule"]["every"] == 0.5
    # Published by name to the dispatch queue, each with the expiry its entry gives.
    tasks = {e["task"] for e in table.values()}
    for message in published:
        headers = message["headers"]
        assert headers["task"] in tasks
        assert message["properties"]["delivery_info"]["routing_key"] == DISPATCH_QUEUE
        assert headers["expires"] is not None
