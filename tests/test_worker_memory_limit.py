"""WORKER_MAX_MEMORY_PER_CHILD_MB: a worker's pool process above it once a task is done is
replaced by a fresh fork, which takes the next task. Shown on the control worker as
ops/entrypoint.sh starts it, with the limit set below what any pool process holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import redis
from celery import Celery

from tests import redis_urls
from worker.celery_app import DISPATCH_QUEUE

ROOT = Path(__file__).resolve().parents[1]


def _until(check: Callable[[], object], seconds: float, what: str, log: Path) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds} s:\n{log.read_text(errors='replace')[-3000:]}")


def test_a_pool_process_over_the_limit_is_replaced_after_its_task(app, settings_env, tmp_path):
    redis.Redis.from_url(redis_urls.BROKER_URL).flushdb()
    env = {
        **os.environ,
        **settings_env,
        "CELERY_BROKER_URL": redis_urls.BROKER_URL,
        "WORKER_MAX_MEMORY_PER_CHILD_MB": "16",  # an idle pool process holds far more
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "control.log"
    worker = subprocess.Popen(
        ["bash", "ops/entrypoint.sh", "control", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    client = Celery(broker=redis_urls.BROKER_URL, set_as_current=False)
    node = f"control@{socket.gethostname()}"
    try:
        _until(lambda: client.control.ping([node], timeout=1), 60, "the worker answers", log)
        parent = psutil.Process(worker.pid)

        def children() -> list[int]:
            return [c.pid for c in parent.children()]

        first = _until(children, 30, "a pool process", log)
        client.send_task("sendfleet.guards", queue=DISPATCH_QUEUE)
        _until(lambda: children() and children() != first, 30, "a replacement", log)
        second = children()
        assert len(second) == 1 and second != first
        client.send_task("sendfleet.guards", queue=DISPATCH_QUEUE)
        _until(lambda: children() and children() != second, 30, "the next replacement", log)
        text = log.read_text(errors="replace")
        assert text.count("Task sendfleet.guards[") >= 2 and "succeeded" in text, text[-3000:]
        assert "Traceback" not in text, text
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
