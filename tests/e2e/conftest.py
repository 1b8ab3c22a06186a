"""End-to-end: a real Celery worker and beat, started as operators start them
(`celery -A worker worker`, `celery -A worker beat`), against the test database, Redis and
SMTP servers in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from app.extensions import db
from app.models import Recipient
from tests import redis_urls

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = redis_urls.BROKER_URL

E2E_ENV = {
    "CELERY_BROKER_URL": BROKER_URL,
    "DISPATCH_INTERVAL_SECONDS": "0.5",
    "RECOVERY_INTERVAL_SECONDS": "1",
    "RETRY_DELAYS_SECONDS": "1,1,1",
    "QUEUED_STALE_SECONDS": "30",
    "SEND_LEASE_SECONDS": "80",  # the least SMTP_TIMEOUT_SECONDS allows (5 s x 16 steps)
    "SMTP_TIMEOUT_SECONDS": "5",
    "LIMIT_SYSTEM_PER_MINUTE": "100000",
    "LIMIT_ACCOUNT_PER_MINUTE": "100000",
    # The production defaults, whatever the in-process tests use.
    "SEND_PACING": "true",
    "DISPATCH_HORIZON_SECONDS": "30",
    "LOG_LEVEL": "INFO",
}


class Stack:
    """The worker and beat processes; each in its own process group so a test can kill one
    the way the kernel's OOM killer or a power cut would (SIGKILL, no cleanup)."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.concurrency = 2

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str = "worker", queues: str | None = None) -> None:
        """`queues`: e.g. "sendfleet.dispatch" for a control worker alone; all by default."""
        log_path = self.workdir / f"{name}.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        self._start(
            name,
            [
                "worker",
                *(["-Q", queues] if queues else []),
                "--pool",
                "prefork",
                "-c",
                str(self.concurrency),
                "--loglevel",
                "INFO",
                "-n",
                f"{name}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if b" ready." in log_path.read_bytes()[start:]:
                return
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start:\n{self.log(name)[-3000:]}")

    def start_beat(self) -> None:
        self._start(
            "beat", ["beat", "-s", str(self.workdir / "beat-schedule"), "--loglevel", "INFO"]
        )

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")


def make_stack(
    settings_env: dict[str, str],
    workdir: Path,
    *,
    defaults: tuple[str, ...] = (),
    **overrides: str,
) -> Stack:
    """`defaults`: settings left unset, so the processes run with their shipped defaults."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    env = {**os.environ, **settings_env, **E2E_ENV, **overrides}
    for name in defaults:
        env.pop(name, None)
    return Stack(env, workdir)


@pytest.fixture(scope="module")
def stack(settings_env: dict[str, str], app: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    running = make_stack(settings_env, tmp_path_factory.mktemp("stack"))
    running.start_worker()
    running.start_beat()
    yield running
    running.stop()


def wait_until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status_counts(campaign_id: int) -> dict[str, int]:
    db.session.rollback()
    rows = db.session.execute(
        select(Recipient.status, func.count())
        .where(Recipient.campaign_id == campaign_id)
        .group_by(Recipient.status)
    ).all()
    return {status: count for status, count in rows}


def settled(campaign_id: int, *waiting_ok: str) -> Callable[[], bool]:
    """True once nothing of the campaign is queued or sending (and, unless allowed, nothing
    is pending or deferred)."""
    busy = {"queued", "sending", "pending", "deferred"} - set(waiting_ok)

    def check() -> bool:
        return not busy & set(status_counts(campaign_id))

    return check
