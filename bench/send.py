"""Send pipeline throughput against a raw baseline measured in the same run.

- ours: N recipients through the real path (beat -> dispatcher -> Celery send tasks on two
  worker processes -> pooled SMTP), limits lifted, into Postfix's smtp-sink;
- baseline: a bare smtplib loop over one reused connection into the same sink, sending the
  same number of messages of the same size, run before the pipeline and again after it (the
  ratio is against their mean, and printed against each);
- limiter: reserve_many decisions/s (batches as the dispatcher makes them, 8 windows each)
  against Redis PING round trips/s from the same client.

Usage: .venv/bin/python bench/send.py [--recipients 20000]
Needs smtp-sink (Debian package postfix), PostgreSQL and Redis on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import redis
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import admin, free_port  # noqa: E402

REDIS_DB = "redis://127.0.0.1:6379/11"
BROKER_DB = "redis://127.0.0.1:6379/10"






def start_sink(port: int, *flags: str) -> subprocess.Popen[bytes]:
    """Postfix's smtp-sink on the port; `flags` are smtp-sink's (-p: no PIPELINING)."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(binary).exists():
        sys.exit("smtp-sink not found: apt-get install postfix")
    process = subprocess.Popen(
        [binary, *flags, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    sys.exit("smtp-sink did not start")


def sample_message() -> bytes:
    from rotator.message import MessageSpec, build_message, make_message_id

    return build_message(
        MessageSpec(
            from_email="bench@bench.example",
            from_name="Bench",
            to_email="x@gmail.com",
            subject="Hello there",
            text="Hi there,\nA short note from the benchmark.\n",
            html=None,
            unsubscribe_url="https://sendfleet.test/u/token",
            unsubscribe_mailto="mailto:unsubscribe@bench.example?subject=unsubscribe-token",
            company_address="Bench Ltd, 1 Test Street, Berlin",
            message_id=make_message_id("bench.example"),
        )
    )


def baseline(port: int, count: int) -> float:
    """msgs/s of a bare smtplib loop over one reused connection."""
    data = sample_message()
    smtp = smtplib.SMTP("127.0.0.1", port)
    smtp.ehlo()
    started = time.perf_counter()
    for i in range(count):
        smtp.sendmail("bench@bench.example", [f"p{i}@gmail.com"], data)
    elapsed = time.perf_counter() - started
    smtp.quit()
    return count / elapsed


def limiter_figures(seconds: float = 2.0) -> tuple[float, float]:
    from rotator.limiter import Limiter, Scope, Window

    client = redis.Redis.from_url(REDIS_DB)
    client.flushdb()
    started, pings = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        client.ping()
        pings += 1
    ping_rate = pings / (time.perf_counter() - started)

    limiter = Limiter(client)
    big = 10**9
    decisions = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [
            [
                Window(Scope.SYSTEM, "*", 60, big),
                Window(Scope.SYSTEM, "*", 86400, big),
                Window(Scope.ACCOUNT, str(i % 3), 60, big),
                Window(Scope.ACCOUNT, str(i % 3), 86400, big),
                Window(Scope.SENDING_DOMAIN, "bench.example", 60, big),
                Window(Scope.SENDING_DOMAIN, "bench.example", 86400, big),
                Window(Scope.RECIPIENT_DOMAIN, f"d{i % 50}.example", 60, big),
                Window(Scope.RECIPIENT_DOMAIN, f"d{i % 50}.example", 86400, big),
            ]
            for i in range(100)
        ]
        decisions += len(limiter.reserve_many(batch))
    rate = decisions / (time.perf_counter() - started)
    client.flushdb()
    return rate, ping_rate


def pipeline(
    port: int,
    sink_pid: int,
    recipients: int,
    workdir: Path,
    send_processes: int = 2,
    accounts: int = 2,
) -> float:
    db_name = f"sendfleet_bench_send_{os.getpid()}"
    database_url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    admin(f'CREATE DATABASE "{db_name}"')
    env = {
        **os.environ,
        "SENDFLEET_ENV": "production",  # https PUBLIC_BASE_URL below
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_DB,
        "CELERY_BROKER_URL": BROKER_DB,
        "SECRET_KEY": uuid.uuid4().hex,
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "COMPANY_ADDRESS": "Bench Ltd, 1 Test Street, Berlin",
        "PUBLIC_BASE_URL": "https://sendfleet.test",
        "SANDBOX_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "LIMIT_SYSTEM_PER_MINUTE": "10000000",
        "LIMIT_ACCOUNT_PER_MINUTE": "10000000",
        "LIMIT_FREEMAIL_PER_DAY": "10000000",
        "LIMIT_SENDING_DOMAIN_PER_DAY": "10000000",
        "LIMIT_RECIPIENT_DOMAIN_PER_DAY": "10000000",
        "DISPATCH_INTERVAL_SECONDS": "0.5",
        "DISPATCH_BATCH_SIZE": "2000",
        "DISPATCH_MAX_IN_FLIGHT": "6000",
        "SEND_GROUP_SIZE": "100",
        "LOG_LEVEL": "WARNING",
    }
    for key in ("SENDFLEET_TEST_PG",):
        env.pop(key, None)
    redis.Redis.from_url(REDIS_DB).flushdb()
    redis.Redis.from_url(BROKER_DB).flushdb()
    processes: list[subprocess.Popen[bytes]] = []
    roles: list[str] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        campaign_id = _seed(database_url, recipients, accounts)
        log = open(workdir / "worker.log", "wb")  # noqa: SIM115

        def celery(role: str, *args: str) -> None:
            roles.append(role)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "worker", *args],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        quiet = (
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        )
        # The production shape: the dispatcher in its own one-process worker (it runs one
        # pass at a time anyway), two worker processes that only send.
        celery("dispatcher", "worker", "-c", "1", "-Q", "sendfleet.dispatch", "-n", "dispatch@%h",
               *quiet)  # fmt: skip
        celery("send workers", "worker", "-c", str(send_processes), "-Q", "sendfleet.send",
               "-n", "send@%h", *quiet)  # fmt: skip
        _wait_for_worker()
        celery("beat", "beat", "-s", str(workdir / "beat-schedule"), "--loglevel", "WARNING")
        _wait_for_first_recovery_pass()
        conn = psycopg2.connect(database_url)
        conn.autocommit = True
        cur = conn.cursor()
        cpu_before = [cpu_seconds(p.pid) for p in processes]
        main_before = cpu_seconds(processes[1].pid, children=False)
        cpu_sink_before = cpu_seconds(sink_pid)
        started = time.perf_counter()
        cur.execute("UPDATE campaigns SET status = 'running' WHERE id = %s", (campaign_id,))
        while True:
            cur.execute(
                "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER "
                "(WHERE status IN ('pending','queued','sending','deferred')) "
                "FROM recipients WHERE campaign_id = %s",
                (campaign_id,),
            )
            sent, waiting = cur.fetchone()
            if waiting == 0:
                break
            if time.perf_counter() - started > 600:
                sys.exit(f"pipeline did not finish: {sent} sent, {waiting} waiting")
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = {
            role: cpu_seconds(p.pid) - before
            for role, p, before in zip(roles, processes, cpu_before, strict=True)
        }
        # Of the send workers: the main process (consuming from the broker, handing tasks
        # to its children) apart from the children that send.
        cpu["  of which main process"] = (
            cpu_seconds(processes[1].pid, children=False) - main_before
        )
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        # Backends started during the run: their whole CPU time is the run's.
        cpu["postgres backends"] = sum(cpu_seconds(pid) for (pid,) in cur.fetchall())
        cpu["smtp-sink"] = cpu_seconds(sink_pid) - cpu_sink_before
        cur.execute(
            "SELECT coalesce(sum(handbacks), 0), count(*) FILTER (WHERE attempts > 1) "
            "FROM recipients WHERE campaign_id = %s",
            (campaign_id,),
        )
        handbacks, retried = cur.fetchone()
        conn.close()
        if sent != recipients:
            sys.exit(f"only {sent} of {recipients} sent")
        print(f"pipeline wall              {elapsed:10.2f} s  (handbacks {handbacks}, "
              f"rows attempted twice {retried})")  # fmt: skip
        for role, seconds in cpu.items():
            print(f"  CPU {role:22} {seconds * 1000 / recipients:6.3f} ms/msg  ({seconds:.2f} s)")
        return recipients / elapsed
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{db_name}"')


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User and system CPU seconds of a process and (by default) its children still
    running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or (children and int(fields[1]) == pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _wait_for_first_recovery_pass() -> None:
    """Recovery's first pass on a Redis new to it (the flushed bench databases) sends every
    queued row no process holds back to pending, as after a Redis loss; the run starts
    after it, as a deployment's sends do."""
    from worker.jobs.heartbeat import EPOCH_KEY

    client = redis.Redis.from_url(REDIS_DB)
    deadline = time.time() + 60
    while not client.exists(EPOCH_KEY):
        if time.time() > deadline:
            sys.exit("recovery did not run")
        time.sleep(0.1)


def _wait_for_worker() -> None:
    from celery import Celery

    control = Celery(broker=BROKER_DB).control
    deadline = time.time() + 60
    while len(control.ping(timeout=0.5)) < 2:
        if time.time() > deadline:
            sys.exit("worker did not start")


def _seed(database_url: str, recipients: int, accounts: int = 2) -> int:
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        for n in range(accounts):
            cur.execute(
                "INSERT INTO accounts (client_id, name, provider, email, sending_domain, host,"
                " port, security, daily_limit, warmup_enabled, per_minute_limit)"
                " VALUES ((SELECT min(id) FROM clients), %s, 'smtp', %s, 'bench.example',"
                " '127.0.0.1', 25, 'none', 10000000, false, 10000000)",
                (f"bench-{n}", f"sender{n}@bench.example"),
            )
        cur.execute(
            "INSERT INTO campaigns (client_id, name, subject, body_text, status) VALUES "
            "((SELECT min(id) FROM clients), 'bench',"
            " 'Hello {{ first_name | default(\"there\") }}', "
            "'Hi {{ first_name | default(\"there\") }},\nA short note from the benchmark.\n',"
            " 'draft') RETURNING id"
        )
        campaign_id = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO recipients (campaign_id, email, domain, fields) "
            "SELECT %s, 'p' || g || '@gmail.com', 'gmail.com', "
            "jsonb_build_object('first_name', 'P' || g) FROM generate_series(1, %s) g",
            (campaign_id, recipients),
        )
    conn.close()
    return int(campaign_id)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--send-processes", type=int, default=2)
    parser.add_argument(
        "--accounts", type=int, default=2, help="sender accounts, all on the one sink"
    )
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # The baseline before and after: this shared machine's speed drifts by a third
            # within minutes, so one baseline taken before could flatter or sink the ratio.
            before = baseline(port, args.recipients)
            ours = pipeline(
                port, sink.pid, args.recipients, Path(tmp), args.send_processes, args.accounts
            )
            after = baseline(port, args.recipients)
        limiter_rate, ping_rate = limiter_figures()
    finally:
        sink.terminate()
        sink.wait(5)
    print(f"recipients                 {args.recipients}")
    base_rate = (before + after) / 2
    print(
        f"bare smtplib loop          {base_rate:10.0f} msgs/s  (one connection, smtp-sink; "
        f"before the pipeline {before:.0f}, after it {after:.0f})"
    )
    print(
        f"sendfleet pipeline         {ours:10.0f} msgs/s  "
        f"(beat, dispatcher, {args.send_processes} send processes, {args.accounts} accounts)"
    )
    print(
        f"ratio pipeline / bare      {ours / base_rate:10.2f}     (target >= 0.5; against the "
        f"baseline before {ours / before:.2f}, after {ours / after:.2f})"
    )
    print(f"limiter decisions          {limiter_rate:10.0f} /s     (reserve_many, 8 windows)")
    print(f"redis PING round trips     {ping_rate:10.0f} /s")
    print(f"ratio limiter / PING       {limiter_rate / ping_rate:10.2f}     (target >= 0.3)")


if __name__ == "__main__":
    main()
