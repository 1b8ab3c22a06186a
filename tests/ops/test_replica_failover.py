"""Node 2's replica for real: a primary cluster configured with ops/postgres (primary.conf,
pg_hba.conf, the replication role), a second cluster cloned from it by
ops/postgres/replica-init.sh (the replica container's entrypoint, run natively) that streams
from it, and ops/failover.sh promoting it once the primary is gone, after which the api
(gunicorn 'app:create_app()' started through COMPOSE_CMD) serves from it and takes writes.

The tests run in file order on one pair of clusters; the last one promotes the replica."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.e2e.private_stores import PrivatePostgres, free_port

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
SUPERUSER_PASSWORD = "node1-superuser-pw"
REPLICATION_USER = "replicator"
REPLICATION_PASSWORD = "repl-pw-'quoted'"
APP_DB = "sendfleet"


@dataclass
class Pair:
    primary: PrivatePostgres
    replica: PrivatePostgres
    env: dict[str, str]  # the node's settings, DATABASE_URL the primary's
    workdir: Path

    def url(self, node: PrivatePostgres, dbname: str = APP_DB) -> str:
        return node.dsn(dbname, password=SUPERUSER_PASSWORD)


def _query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except psycopg2.Error:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s: {what}")


def _script_env(pg: PrivatePostgres, **values: str) -> list[str]:
    path = f"{pg.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return ["env", f"PATH={path}", *(f"{k}={v}" for k, v in values.items())]


def _replica_init(
    replica: PrivatePostgres, primary: PrivatePostgres, slot: str
) -> subprocess.CompletedProcess[str]:
    """The replica container's entrypoint, natively, with `true` as the server command (the
    test starts the server itself, on its own port)."""
    return _run(
        replica.as_owner(
            *_script_env(
                replica, PGDATA=str(replica.datadir), PRIMARY_ADDR="127.0.0.1",
                PRIMARY_PORT=str(primary.port), REPLICATION_USER=REPLICATION_USER,
                REPLICATION_PASSWORD=REPLICATION_PASSWORD, REPLICATION_SLOT=slot,
                PRIMARY_WAIT_SECONDS="30",
            ),
            "bash", replica.owned_copy(OPS / "postgres" / "replica-init.sh"), "true",
        )
    )  # fmt: skip


def _failover(
    pair: Pair, env_file: Path, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    compose = (
        f"{sys.executable} {ROOT / 'tests/ops/native_compose.py'} "
        f"--env-file {env_file} --state-dir {pair.workdir}"
    )
    env = {
        **os.environ,
        "PATH": f"{pair.primary.bindir}:{os.environ['PATH']}",
        "COMPOSE_CMD": compose,
        "APP_SERVICES": "api",
        "FAILOVER_TIMEOUT_SECONDS": "60",
        **settings,
    }
    return subprocess.run(
        ["bash", str(OPS / "failover.sh"), *args, "--env-file", str(env_file)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`args` run to completion; a failure raises with what the command said."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        said = f"{done.stdout}\n{done.stderr}"
        raise AssertionError(f"{args[-3:]} failed ({done.returncode}):\n{said}")
    return done


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    path.write_text("# node 2\n" + "".join(f"{k}={v}\n" for k, v in env.items()) + "EXTRA=kept\n")
    path.chmod(0o640)


@pytest.fixture(scope="module")
def pair(settings_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("replica")
    primary = PrivatePostgres()
    replica: PrivatePostgres | None = None
    api_pidfile = workdir / "api.pid"
    try:
        primary.init()  # initdb's trust rules, to set the passwords before they count
        primary.execute(f"ALTER ROLE postgres PASSWORD '{SUPERUSER_PASSWORD}'")
        # The role node 1's image creates on its first start, by the script it runs then.
        _run(
            primary.as_owner(
                *_script_env(
                    primary, PGHOST=str(primary.root), PGPORT=str(primary.port),
                    REPLICATION_USER=REPLICATION_USER, REPLICATION_PASSWORD=REPLICATION_PASSWORD,
                ),
                "bash", primary.owned_copy(OPS / "postgres" / "init-replication-user.sh"),
            )
        )  # fmt: skip
        primary.stop()
        primary.server_options = primary.deployment_options()
        primary.start()
        password_dsn = primary.dsn(password=SUPERUSER_PASSWORD)
        _query(password_dsn, f"CREATE DATABASE {APP_DB}")
        env = {
            **settings_env,
            "DATABASE_URL": primary.dsn(APP_DB, password=SUPERUSER_PASSWORD),
            "API_PORT": str(free_port()),
        }
        _run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT, env={**os.environ, **env},
        )  # fmt: skip

        replica = PrivatePostgres()
        replica.server_options = replica.deployment_options()
        _replica_init(replica, primary, slot="node2")
        replica.start()
        yield Pair(primary, replica, env, workdir)
    finally:
        if api_pidfile.exists():
            subprocess.run(
                [sys.executable, str(ROOT / "tests/ops/native_compose.py"), "--env-file",
                 str(workdir / "node.env"), "--state-dir", str(workdir), "down", "api"],
                check=False,
            )  # fmt: skip
        if replica is not None:
            replica.destroy()
        primary.destroy()


def test_replica_streams_rows_written_on_the_primary(pair: Pair) -> None:
    assert _query(pair.url(pair.replica), "SELECT pg_is_in_recovery()") == [(True,)]
    # The replica connects a moment after it starts: streaming, through its slot.
    _wait_for(
        lambda: _query(
            pair.url(pair.primary, "postgres"),
            "SELECT r.state, s.slot_name FROM pg_stat_replication r "
            "JOIN pg_replication_slots s ON s.active_pid = r.pid",
        ) == [("streaming", "node2")],
        30, "the replica streaming from the primary through slot node2",
    )  # fmt: skip

    # Rows written after the clone arrive by streaming, not by the pg_basebackup copy.
    for n in range(3):
        _query(
            pair.url(pair.primary),
            "INSERT INTO suppressions (kind, value, reason, source) VALUES ('email', %s, "
            "'manual', 'replica-test')",
            (f"streamed{n}@example.org",),
        )
    streamed = "SELECT count(*) FROM suppressions WHERE source = 'replica-test'"
    _wait_for(
        lambda: _query(pair.url(pair.replica), streamed) == [(3,)],
        30, "the primary's rows on the replica",
    )  # fmt: skip
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        _query(pair.url(pair.replica), "DELETE FROM suppressions")


def test_replica_rebuilt_from_scratch_reuses_its_slot_and_a_restart_keeps_its_data(
    pair: Pair,
) -> None:
    _query(
        pair.url(pair.primary, "postgres"),
        "SELECT pg_create_physical_replication_slot('spare')",
    )
    rebuilt = PrivatePostgres()
    try:
        first = _replica_init(rebuilt, pair.primary, slot="spare")
        assert "slot spare exists on the primary; reusing it" in first.stderr
        assert (rebuilt.datadir / "standby.signal").exists()
        auto_conf = (rebuilt.datadir / "postgresql.auto.conf").read_text()
        assert "primary_slot_name = 'spare'" in auto_conf
        assert not Path(f"{rebuilt.datadir}.partial").exists()

        again = _replica_init(rebuilt, pair.primary, slot="spare")
        assert "already holds a cluster; starting it as it is" in again.stderr
        assert (rebuilt.datadir / "postgresql.auto.conf").read_text() == auto_conf
    finally:
        rebuilt.destroy()
        _query(pair.url(pair.primary, "postgres"), "SELECT pg_drop_replication_slot('spare')")


def test_failover_refuses_a_target_that_is_not_a_replica(pair: Pair, tmp_path: Path) -> None:
    env_file = tmp_path / "node.env"
    _write_env_file(env_file, pair.env)
    before = env_file.read_text()

    done = _failover(pair, env_file, "--replica", f"127.0.0.1:{pair.primary.port}")

    assert done.returncode == 1
    assert "refusing" in done.stderr and "is not a replica" in done.stderr
    assert SUPERUSER_PASSWORD not in done.stdout + done.stderr
    assert env_file.read_text() == before
    assert not (pair.workdir / "api.pid").exists()


def test_repoint_only_refuses_a_replica(pair: Pair, tmp_path: Path) -> None:
    env_file = tmp_path / "node.env"
    _write_env_file(env_file, pair.env)
    before = env_file.read_text()

    done = _failover(
        pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}", "--repoint-only"
    )

    assert done.returncode == 1 and "is still a replica" in done.stderr
    assert env_file.read_text() == before


def test_failover_refuses_while_the_old_primary_still_answers(pair: Pair, tmp_path: Path) -> None:
    env_file = tmp_path / "node.env"
    _write_env_file(env_file, pair.env)
    before = env_file.read_text()

    done = _failover(pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}")

    assert done.returncode == 1
    assert "still answers as a primary" in done.stderr
    assert _query(pair.url(pair.replica), "SELECT pg_is_in_recovery()") == [(True,)]
    assert env_file.read_text() == before


def test_dry_run_prints_the_plan_and_changes_nothing(pair: Pair, tmp_path: Path) -> None:
    env_file = tmp_path / "node.env"
    _write_env_file(env_file, pair.env)
    before = env_file.read_text()

    done = _failover(
        pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}", "--force", "--dry-run"
    )

    assert done.returncode == 0, done.stderr
    assert "dry run" in done.stdout and "pg_promote" in done.stdout
    assert "up -d --force-recreate --no-deps api" in done.stdout
    assert _query(pair.url(pair.replica), "SELECT pg_is_in_recovery()") == [(True,)]
    assert env_file.read_text() == before
    assert list(tmp_path.glob("node.env.*")) == []


def test_failover_promotes_the_replica_and_the_api_serves_and_writes_there(pair: Pair) -> None:
    env_file = pair.workdir / "node.env"
    _write_env_file(env_file, pair.env)
    _query(
        pair.url(pair.primary),
        "INSERT INTO suppressions (kind, value, reason, source) "
        "VALUES ('email', 'last@example.org', 'manual', 'replica-test')",
    )
    _wait_for(
        lambda: _query(
            pair.url(pair.replica), "SELECT 1 FROM suppressions WHERE value = 'last@example.org'"
        ) == [(1,)],
        30, "the last row on the replica",
    )  # fmt: skip
    pair.primary.stop("immediate")  # node 1's database is lost
    api = f"http://127.0.0.1:{pair.env['API_PORT']}"

    done = _failover(
        pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}",
        FAILOVER_HEALTH_URL=f"{api}/api/v1/health",
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepts writes" in done.stdout and "answers" in done.stdout
    assert SUPERUSER_PASSWORD not in done.stdout + done.stderr
    assert _query(pair.url(pair.replica), "SELECT pg_is_in_recovery()") == [(False,)]
    lines = env_file.read_text().splitlines()
    assert f"DATABASE_URL={pair.url(pair.replica)}" in lines
    assert [line for line in lines if line.startswith("DATABASE_URL=")] == [
        f"DATABASE_URL={pair.url(pair.replica)}"
    ]
    assert "EXTRA=kept" in lines and f"SECRET_KEY={pair.env['SECRET_KEY']}" in lines
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    [kept] = list(pair.workdir.glob("node.env.before-failover-*"))
    assert f"DATABASE_URL={pair.url(pair.primary)}" in kept.read_text().splitlines()

    health = requests.get(f"{api}/api/v1/health", timeout=10)
    assert health.status_code == 200 and health.json()["database"] == "ok"
    node_env = {**os.environ, **pair.env, "DATABASE_URL": pair.url(pair.replica)}
    created = _run(
        [sys.executable, "-m", "flask", "--app", "app", "keys", "create", "after-failover"],
        cwd=ROOT, env=node_env,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    written = requests.post(
        f"{api}/api/v1/suppressions", json={"email": "after@example.org"}, headers=headers,
        timeout=10,
    )  # fmt: skip
    assert written.status_code == 201, written.text
    listed = requests.get(f"{api}/api/v1/suppressions", headers=headers, timeout=10)
    assert {"last@example.org", "after@example.org"} <= {
        row["value"] for row in listed.json()["items"]
    }
    written_there = "SELECT count(*) FROM suppressions WHERE value = 'after@example.org'"
    assert _query(pair.url(pair.replica), written_there) == [(1,)]

    again = _failover(pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}")
    assert again.returncode == 1 and "is not a replica" in again.stderr


def test_repoint_only_sets_the_address_variable_another_node_builds_its_url_from(
    pair: Pair, tmp_path: Path
) -> None:
    """compose/worker.yml builds DATABASE_URL from NODE1_ADDR; after the promotion node 3's
    env file gets the replica's host there. Runs after the promotion above."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("POSTGRES_PASSWORD=pw\nNODE1_ADDR=10.20.0.1\nREDIS_URL=redis://x\n")

    done = _failover(
        pair, env_file, "--replica", f"127.0.0.1:{pair.replica.port}", "--repoint-only",
        "--address-var", "NODE1_ADDR",
        COMPOSE_CMD="true", PGUSER="postgres", PGPASSWORD=SUPERUSER_PASSWORD,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "repointing only" in done.stdout and "promoting" not in done.stdout
    assert env_file.read_text().splitlines() == [
        "POSTGRES_PASSWORD=pw", "NODE1_ADDR=127.0.0.1", "REDIS_URL=redis://x"
    ]  # fmt: skip
