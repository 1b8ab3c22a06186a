"""ops/entrypoint.sh, the one holder of every process's command line (the image's
ENTRYPOINT, every Compose service), run natively: migrate migrates a fresh database, api
answers /api/v1/health, the workers consume their own queue and answer their health check,
a drained worker takes no queue and stops warm, beat schedules the dispatcher."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis
from alembic.script import ScriptDirectory

from tests import redis_urls
from tests.conftest import PG_ADMIN_DSN, _admin_exec

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "ops" / "entrypoint.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    name = f"sendfleet_entry_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_exec(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    finally:
        _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def env(
    settings_env: dict[str, str], fresh_database: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    redis.Redis.from_url(redis_urls.BROKER_URL).flushdb()
    work = tmp_path_factory.mktemp("entrypoint")
    # Every process that imports prometheus_client writes there (gunicorn.conf.py sets it for
    # the API; set here for all, it must exist first).
    (work / "prometheus").mkdir()
    return {
        **os.environ,
        **settings_env,
        "DATABASE_URL": fresh_database,
        "REDIS_URL": redis_urls.BROKER_URL,
        "BEAT_SCHEDULE_FILE": str(work / "beat-schedule"),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
        "DISPATCH_INTERVAL_SECONDS": "1",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def migrated(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [ENTRYPOINT, "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return env


class Role:
    """One entrypoint role as a process of its own (group), with its log."""

    def __init__(self, role: str, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.process = subprocess.Popen(
            [ENTRYPOINT, role],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, (
                f"exited {self.process.returncode}:\n{self.log()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise


def entry(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENTRYPOINT, *args], env=env, capture_output=True, text=True, timeout=120)


def test_migrate_brings_a_fresh_database_to_head_and_again_changes_nothing(
    migrated: dict[str, str],
) -> None:
    heads = ScriptDirectory(str(ROOT / "app" / "migrations")).get_heads()
    with psycopg2.connect(migrated["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version")
        assert [row[0] for row in cur.fetchall()] == heads
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'recipients'"
        )
        assert cur.fetchone() == (1,)
    again = entry("migrate", env=migrated)
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr


def test_migrate_writes_the_first_login_when_asked(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    login = tmp_path / "first-login.txt"
    done = entry("migrate", env={**migrated, "FIRST_LOGIN_FILE": str(login)})
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in login.read_text().splitlines())
    assert set(lines) == {"login", "password", "api key"}
    assert lines["api key"] in done.stdout


def test_api_answers_health_through_gunicorn(migrated: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**migrated, "API_BIND": f"127.0.0.1:{port}"}
    api = Role("api", env, tmp_path / "api.log")
    try:
        api.wait_for("Booting worker")
        deadline = time.monotonic() + 30
        while entry("health", "api", env=env).returncode != 0:
            assert time.monotonic() < deadline, api.log()[-3000:]
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as reply:
            assert json.load(reply) == {"status": "ok", "database": "ok", "redis": "ok"}
        # --preload: the app is built once in the master, and both workers serve it.
        assert api.log().count("Booting worker") == 2
    finally:
        assert api.stop() == 0
    assert entry("health", "api", env=env).returncode != 0


def _active_queues(env: dict[str, str], node: str) -> list[str]:
    done = subprocess.run(
        ["celery", "-A", "worker", "inspect", "active_queues", "-d", node, "--json"],
        cwd=ROOT, env={**env, "PATH": f"{ROOT}/.venv/bin:{env['PATH']}"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [queue["name"] for queue in json.loads(done.stdout)[node]]


def test_send_worker_consumes_the_send_queue_then_drains_and_stops_warm(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    node = f"send@{socket.gethostname()}"
    worker = Role("worker", migrated, tmp_path / "worker.log")
    try:
        worker.wait_for(" ready.")
        assert entry("health", "worker", env=migrated).returncode == 0
        assert _active_queues(migrated, node) == ["sendfleet.send"]
        drained = entry("drain", "worker", env=migrated)
        assert drained.returncode == 0, drained.stderr
        assert f"drain: {node} takes no new tasks and has none in flight" in drained.stdout
        assert _active_queues(migrated, node) == []
    finally:
        code = worker.stop()
    assert code == 0
    assert "Warm shutdown" in worker.log() or "worker: Warm shutdown" in worker.log()
    assert entry("health", "worker", env=migrated).returncode != 0


def test_control_worker_runs_the_dispatch_queue_in_one_process(
    migrated: dict[str, str], tmp_path: Path
) -> None:
    node = f"control@{socket.gethostname()}"
    control = Role("control", migrated, tmp_path / "control.log")
    try:
        control.wait_for(" ready.")
        assert entry("health", "control", env=migrated).returncode == 0
        assert _active_queues(migrated, node) == ["sendfleet.dispatch"]
        assert "concurrency: 1 (prefork)" in control.log()
    finally:
        assert control.stop() == 0


def test_beat_schedules_the_dispatcher(migrated: dict[str, str], tmp_path: Path) -> None:
    beat = Role("beat", migrated, tmp_path / "beat.log")
    try:
        beat.wait_for("Sending due task", timeout=30)
        assert redis.Redis.from_url(migrated["REDIS_URL"]).llen("sendfleet.dispatch") > 0
    finally:
        assert beat.stop() == 0


def test_unknown_role_is_refused_with_usage(migrated: dict[str, str]) -> None:
    done = entry("webserver", env=migrated)
    assert done.returncode == 64
    assert "usage: ops/entrypoint.sh" in done.stderr
    assert entry("health", "beat", env=migrated).returncode == 64
