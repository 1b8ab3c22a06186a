"""A Redis server and a PostgreSQL cluster of the test's own, on free ports in temp dirs, that
a drill may restart, flush or stop: never the machine's shared ones (5432, 6379), which
other runs are using. Each is a child of this process (PostgreSQL through pg_ctl on its own
data directory), stopped by its own pid or data directory, never by name."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg2
import redis

OPS_POSTGRES = Path(__file__).resolve().parents[2] / "ops" / "postgres"
COMPOSE_FILE = OPS_POSTGRES.parents[1] / "docker-compose.yml"


def deployment_initdb_args() -> list[str]:
    """initdb's options for the deployment's clusters: POSTGRES_INITDB_ARGS of the
    postgres service in docker-compose.yml (the image's entrypoint appends them)."""
    import shlex

    import yaml

    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["postgres"]
    return shlex.split(service["environment"]["POSTGRES_INITDB_ARGS"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s: {what}")


class PrivateRedis:
    """`redis-server --save '' --appendonly no`: a restart loses everything it held."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> PrivateRedis:
        self.starts += 1
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        _wait(self._answers, 10, f"redis-server on port {self.port}")
        return self

    def restart_without_persistence(self, away_seconds: float = 0) -> float:
        """SHUTDOWN NOSAVE, then the same port again after `away_seconds`; returns the
        seconds it did not answer."""
        started = time.monotonic()
        self._shutdown()
        time.sleep(away_seconds)
        self.start()
        return time.monotonic() - started

    def flushall(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._shutdown()

    def _shutdown(self) -> None:
        assert self.process is not None
        # Over a plain socket: redis-py retries the command when the server closes the
        # connection, which is what SHUTDOWN does instead of replying.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            sock.recv(64)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False


def _postgres_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no initdb: install the PostgreSQL server binaries")
    return Path(initdb).parent


class PrivatePostgres:
    """A cluster made with initdb (trust auth, fsync off unless durable) in a temp dir.
    initdb and the server refuse to run as root, so as root the cluster belongs to the
    `postgres` user."""

    def __init__(
        self,
        server_options: str = "",
        *,
        durable: bool = False,
        locale_args: Sequence[str] = ("--no-locale",),
    ) -> None:
        """`server_options`: more `-c name=value` for the server (after the defaults, so
        they win), e.g. a `config_file` of the deployment's own. `durable`: keep fsync,
        synchronous commit and full-page writes as configured (a benchmark's server)
        instead of turning them off for speed. `locale_args`: initdb's locale options
        (the deployment's are POSTGRES_INITDB_ARGS in docker-compose.yml)."""
        self.bindir = _postgres_bindir()
        self.server_options = server_options
        self.durable = durable
        self.locale_args = list(locale_args)
        self.root = Path(tempfile.mkdtemp(prefix="sendfleet-drill-pg-"))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str = "") -> str:
        login = f"{user}:{password}" if password else user
        return f"postgresql://{login}@127.0.0.1:{self.port}/{dbname}"

    def owned_copy(self, source: Path) -> str:
        """`source` copied into the cluster's own dir, where the `postgres` user reads it
        wherever the checkout is (a CI clone under root's home is not readable to it)."""
        copy = self.root / source.name
        shutil.copy(source, copy)
        copy.chmod(0o644)
        return str(copy)

    def deployment_options(self) -> str:
        """The server options that use the deployment's ops/postgres/primary.conf and
        pg_hba.conf (the files the containers mount); port and address stay this cluster's."""
        return (
            f"-c config_file={self.owned_copy(OPS_POSTGRES / 'primary.conf')} "
            f"-c hba_file={self.owned_copy(OPS_POSTGRES / 'pg_hba.conf')}"
        )

    def as_owner(self, *args: str) -> list[str]:
        """The command line that runs `args` as the cluster's owner (`postgres` under root)."""
        return [*self._as, *args]

    def init(self) -> PrivatePostgres:
        self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync", *self.locale_args,
        )  # fmt: skip
        return self.start()

    def start(self) -> PrivatePostgres:
        fast = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        if self.durable:
            fast = ""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 {fast}"
            f"-c max_connections=200 {self.server_options}"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        status = subprocess.run(
            [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"],
            capture_output=True,
        )
        return status.returncode == 0

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def destroy(self) -> None:
        try:
            if self.datadir.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bindir / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stderr}\n{log}")
