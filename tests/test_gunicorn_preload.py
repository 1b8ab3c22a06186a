"""The API as ops/entrypoint.sh starts it (gunicorn --preload, two workers) is fork-safe: the
app is built once in the master, and after the fork each worker reaches PostgreSQL and Redis
over connections of its own, even when the master had already used the database before
forking (gunicorn.conf.py's pre_fork closes the master's pool). Two workers writing to one
inherited socket would interleave their queries on one server session, and a worker's exit
would end the other's session."""

from __future__ import annotations

import json
import os
import re
import time
from urllib.parse import urlsplit

import psutil

from tests.gunicorn_api import ROOT, get, start_api, stop_api

# The project's gunicorn.conf.py, plus a master that uses the database once before it forks:
# its pooled connection is what the workers must not share.
MASTER_USES_THE_DATABASE = f"""
exec(compile(open({str(ROOT / "gunicorn.conf.py")!r}).read(), "gunicorn.conf.py", "exec"))


def when_ready(server):
    from sqlalchemy import text

    from app.extensions import db

    with server.app.callable.app_context():
        port = db.session.execute(text("SELECT inet_client_port()")).scalar()
        db.session.remove()  # back into the pool, still open
    server.log.info("master used the database from port %s", port)
"""


def _health(port: int) -> tuple[int, dict[str, str]]:
    status, body = get(port, "/api/v1/health")
    return status, json.loads(body)


def _sockets_to(pid: int, port: int) -> set[int]:
    """Local ports of `pid`'s established TCP connections to `port` on loopback."""
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def test_each_preloaded_worker_reaches_the_database_and_redis_on_its_own(
    app, settings_env, tmp_path
):
    pg_port = urlsplit(settings_env["DATABASE_URL"]).port or 5432
    redis_port = urlsplit(settings_env["REDIS_URL"]).port or 6379
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(MASTER_USES_THE_DATABASE)
    env = {
        **os.environ,
        **settings_env,
        "API_BIND": "127.0.0.1:0",
        "API_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "gunicorn.log"
    process, port = start_api(env, log, "--config", str(config))
    try:
        workers = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log.read_text())]
        assert len(workers) == 2
        master = process.pid  # the entrypoint execs gunicorn: its pid is the master's
        assert {c.pid for c in psutil.Process(master).children()} == set(workers)
        used = re.search(r"master used the database from port (\d+)", log.read_text())
        assert used, log.read_text()
        master_port = int(used.group(1))
        # Closed before the fork: neither the master nor a worker holds that connection.
        assert not _sockets_to(master, pg_port), _sockets_to(master, pg_port)

        answers = 0
        deadline = time.time() + 60
        while not all(_sockets_to(w, pg_port) for w in workers):
            assert time.time() < deadline, f"one worker never answered:\n{log.read_text()}"
            status, body = _health(port)
            assert (status, body) == (200, {"status": "ok", "database": "ok", "redis": "ok"})
            answers += 1

        # Each worker queried over a connection it opened itself, shared with no one.
        own_db = {w: _sockets_to(w, pg_port) for w in workers}
        assert not any(master_port in ports for ports in own_db.values()), own_db
        assert not own_db[workers[0]] & own_db[workers[1]], own_db
        own_redis = {w: _sockets_to(w, redis_port) for w in workers}
        assert all(own_redis.values()), own_redis
        assert not own_redis[workers[0]] & own_redis[workers[1]], own_redis
        assert process.poll() is None and answers >= 2
        assert "Traceback" not in log.read_text()
    finally:
        stop_api(process)
