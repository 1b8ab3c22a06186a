"""Outage drills (issue 20): a real worker and beat sending through aiosmtpd servers while the
Redis or the PostgreSQL under them goes away. Both stores are the test's own
(tests/e2e/private_stores.py), on their own ports: the drills restart, flush and stop them,
never the machine's shared ones.

Recovery runs with its shipped timings (lease, queued rule, recovery pass, heartbeat, SMTP
timeout), so "finished within 3 minutes of the fault" is what an operator would see; only
the dispatch interval and the per-minute limits are the e2e suite's (to send quickly).
Each drill prints the time from the fault to the campaign's completion (pytest -s)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import _state as celery_state
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import func, select, text

from app import create_app
from app.api.auth import create_key
from app.db import unit_of_work
from app.extensions import db
from app.models import Account, Event, Recipient
from app.settings import Settings
from tests import factories
from tests.conftest import ApiClient
from tests.e2e.conftest import E2E_ENV, Stack, status_counts
from tests.e2e.private_stores import PrivatePostgres, PrivateRedis
from tests.pipeline import smtp_account
from worker.jobs.recovery import run_recovery

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Left unset in the stack's environment: the processes run with the shipped defaults.
SHIPPED_TIMINGS = (
    "SEND_LEASE_SECONDS",
    "QUEUED_STALE_SECONDS",
    "RECOVERY_INTERVAL_SECONDS",
    "SMTP_TIMEOUT_SECONDS",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_TTL_SECONDS",
)
FAULT_BUDGET_SECONDS = 180
TEMPLATE_DB = "drill_template"

# The Redis drills: the earlier sender has 260 - 150 = 110 left today, the others 260 each,
# 630 in all. 700 recipients, so every account's day fills and the limit binds: 630 sent
# (110 + 260 + 260), 70 left pending until the earlier sender's first send leaves its day.
DAILY_LIMIT = 260
EARLIER_SENDS = 150
REDIS_DRILL_RECIPIENTS = 700
REDIS_DRILL_SENT = 3 * DAILY_LIMIT - EARLIER_SENDS
FAULT_AFTER_SENT = 150
REDIS_AWAY_SECONDS = 3  # an ordinary restart: clients see refused connections meanwhile

PG_DRILL_RECIPIENTS = 600
PG_OUTAGE_SECONDS = 20


@dataclass
class Drill:
    redis: PrivateRedis
    app: Flask
    api: ApiClient
    stack: Stack


def _env(database_url: str, redis_server: PrivateRedis | None) -> dict[str, str]:
    """The deployment's settings; without a Redis (migrating) one that is never reached."""
    redis_urls = (redis_server.url(0), redis_server.url(1)) if redis_server else ("redis://x",) * 2
    return {
        "SENDFLEET_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_urls[0],
        "CELERY_BROKER_URL": redis_urls[1],  # the same server: a restart loses both
        "SECRET_KEY": "drill-secret-key",
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "PUBLIC_BASE_URL": "https://sendfleet.test",
        "COMPANY_ADDRESS": "Sendfleet Test Ltd, 1 Test Street, 10115 Berlin",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
    }


@contextmanager
def _celery_default_kept() -> Iterator[None]:
    """create_app() makes its Celery app the process's current and default one; the drill's
    points at a broker that is gone once the drill ends, so the suite's is put back."""
    current, default = celery_state._tls.current_app, celery_state.default_app
    try:
        yield
    finally:
        celery_state._tls.current_app, celery_state.default_app = current, default


def _app_limits() -> dict[str, str]:
    """The stack's limits for the in-process app too (not its log level or broker)."""
    own = (*SHIPPED_TIMINGS, "LOG_LEVEL", "CELERY_BROKER_URL")
    return {k: v for k, v in E2E_ENV.items() if k not in own}


def _flask_app(env: dict[str, str]) -> Flask:
    return create_app(Settings(**{k.lower(): v for k, v in env.items()}))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    """The module's PostgreSQL: initdb'd, with a migrated template each drill copies."""
    from flask_migrate import upgrade

    pg = PrivatePostgres()
    try:
        pg.init()
        pg.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        with _celery_default_kept():
            migrating = _flask_app(_env(pg.dsn(TEMPLATE_DB), None))
            with migrating.app_context():
                upgrade()
                db.engine.dispose()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def drill(cluster: PrivatePostgres, tmp_path: Path) -> Iterator[Drill]:
    """A fresh database, a private Redis, the drill's Flask app (in an app context) and its
    stack, not started yet. Everything is stopped and removed afterwards, failed or not."""
    dbname = f"drill_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    if not cluster.running():  # a failed PostgreSQL drill may have left it stopped
        cluster.start()
    cluster.execute(f"CREATE DATABASE {dbname} TEMPLATE {TEMPLATE_DB}")
    redis_dir = Path(tempfile.mkdtemp(prefix="sendfleet-drill-redis-"))
    redis_server = PrivateRedis(redis_dir)
    try:
        redis_server.start()
        env = _env(cluster.dsn(dbname), redis_server)
        stack_env = {**os.environ, **env, **E2E_ENV, "CELERY_BROKER_URL": env["CELERY_BROKER_URL"]}
        for name in SHIPPED_TIMINGS:
            stack_env.pop(name, None)
        stack = Stack(stack_env, tmp_path)
        with _celery_default_kept():
            app = _flask_app({**_app_limits(), **env})
            with app.app_context():
                with unit_of_work() as session:
                    _, key = create_key(session, "drill")
                # A deployment's recovery has known its Redis for long: the first pass of
                # the stack must not take the fresh server for a lost one.
                run_recovery()
                try:
                    yield Drill(redis_server, app, ApiClient(app.test_client(), key), stack)
                finally:
                    stack.stop()
                    db.session.remove()
                    db.engine.dispose()
    finally:
        redis_server.stop()
        shutil.rmtree(redis_dir, ignore_errors=True)
        if cluster.running():
            cluster.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


# --- reading the outcome ----------------------------------------------------------------


def _sent_count(campaign_id: int) -> int:
    return status_counts(campaign_id).get("sent", 0)


QUIET = text(
    """
    SELECT count(*) FILTER (WHERE status IN ('queued', 'sending', 'deferred')) AS busy,
           count(*) FILTER (WHERE status = 'pending'
                            AND coalesce(next_attempt_at, now()) < now() + interval '1 hour')
               AS due
    FROM recipients WHERE campaign_id = :id
    """
)


def _finished(campaign_id: int) -> bool:
    """Nothing in flight and nothing due for the next hour: the campaign has done what it
    can today."""
    db.session.rollback()
    row = db.session.execute(QUIET, {"id": campaign_id}).one()
    return row.busy == 0 and row.due == 0


def _wait_for(check: Callable[[], bool], timeout: float, what: str, state: Callable[[], Any]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; state: {state()}")


def _received(servers: list[Any]) -> Counter[str]:
    return Counter(rcpt for s in servers for r in s.received for rcpt in r.recipients)


def _rows(campaign_id: int) -> list[Any]:
    db.session.rollback()
    return db.session.execute(
        select(Recipient.email, Recipient.status, Recipient.account_id, Recipient.message_id).where(
            Recipient.campaign_id == campaign_id
        )
    ).all()


def _sent_today(api: ApiClient) -> dict[int, int]:
    response = api.get("/api/v1/accounts")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    items = body["items"] if isinstance(body, dict) else body
    return {item["id"]: item["sent_today"] for item in items}


@contextmanager
def _evidence(stack: Stack, *extra: Path) -> Iterator[None]:
    """On failure, the end of the stack's logs goes with the report."""
    try:
        yield
    except BaseException:
        print(f"\n--- stack workdir: {stack.workdir}")
        for path in (stack.workdir / "worker.log", stack.workdir / "beat.log", *extra):
            if path.exists():
                print(f"--- {path} (end)\n{path.read_text(errors='replace')[-6000:]}")
        raise


def _start(stack: Stack) -> None:
    stack.start_worker()
    stack.start_beat()


def _workers_alive(stack: Stack) -> None:
    for name, process in stack.processes.items():
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        log = stack.log(name)
        for sign in ("WorkerLostError", "exited prematurely", "Process 'ForkPoolWorker"):
            assert sign not in log, f"a worker process died: {sign!r} in {name}.log"


def _total_received(servers: list[Any]) -> int:
    return sum(len(s.received) for s in servers)


# --- Redis drills -----------------------------------------------------------------------


def _earlier_sends(account: Account, count: int, first_at: datetime) -> None:
    """`count` messages the account sent earlier today (a campaign since completed), one
    every 20 s from `first_at`: recipients `sent` and their `sent` events, which is what
    app.services.sends counts."""
    earlier = factories.create_campaign(status="completed")
    rows = [
        Recipient(
            campaign_id=earlier.id,
            email=f"earlier{i}@outlook.com",
            domain="outlook.com",
            fields={},
            status="sent",
            attempts=1,
            account_id=account.id,
            message_id=f"<earlier{i}@{account.sending_domain}>",
            last_smtp_code=250,
            sent_at=first_at + timedelta(seconds=20 * i),
        )
        for i in range(count)
    ]
    db.session.add_all(rows)
    db.session.flush()
    db.session.add_all(
        Event(
            type="sent",
            campaign_id=earlier.id,
            recipient_id=row.id,
            account_id=account.id,
            data={"smtp_code": 250},
            created_at=row.sent_at,
        )
        for row in rows
    )
    db.session.commit()


def _redis_drill(drill: Drill, servers: list[Any], fault: Callable[[], None], name: str) -> None:
    accounts = [
        factories.create_account(**smtp_account(server), daily_limit=DAILY_LIMIT)
        for server in servers
    ]
    first_earlier = datetime.now(UTC) - timedelta(hours=4)
    _earlier_sends(accounts[0], EARLIER_SENDS, first_earlier)
    account_ids = [a.id for a in accounts]
    # Redis knows nothing of today yet: the figure comes from the database.
    earlier_day = [EARLIER_SENDS, 0, 0]
    assert _sent_today(drill.api) == dict(zip(account_ids, earlier_day, strict=True))
    emails = [f"r{i}@gmail.com" for i in range(REDIS_DRILL_RECIPIENTS)]
    campaign_id = factories.create_running_campaign(emails).id
    stack = drill.stack
    with _evidence(stack, drill.redis.workdir / "redis.log"):
        _start(stack)
        _wait_for(
            lambda: _sent_count(campaign_id) >= FAULT_AFTER_SENT,
            120,
            f"{FAULT_AFTER_SENT} sent before the fault",
            lambda: status_counts(campaign_id),
        )
        fault_at = time.monotonic()
        fault()
        at_fault = status_counts(campaign_id)
        assert at_fault.get("sent", 0) < REDIS_DRILL_SENT - 200, (
            f"the fault came too late to prove anything: {at_fault}"
        )
        _wait_for(
            lambda: _finished(campaign_id),
            FAULT_BUDGET_SECONDS,
            "campaign finished after the fault",
            lambda: status_counts(campaign_id),
        )
        took = time.monotonic() - fault_at
        print(
            f"\n[drill {name}] fault at {at_fault.get('sent', 0)} sent; campaign finished "
            f"{took:.1f} s after the fault; final {status_counts(campaign_id)}; "
            f"received per server {[len(s.received) for s in servers]}; limiter windows "
            f"rebuilt {stack.log('worker').count('limiter.rebuilt')} times (first: fresh Redis)"
        )
        _workers_alive(stack)

        received = _received(servers)
        assert max(received.values()) == 1, "a recipient received two copies"
        by_server = [len(s.received) for s in servers]
        # The day as each account's server saw it: the earlier sends plus the campaign's.
        day_totals = [n + before for n, before in zip(by_server, earlier_day, strict=True)]
        assert all(total <= DAILY_LIMIT for total in day_totals), (
            f"daily limit {DAILY_LIMIT} exceeded: day totals per account {day_totals}"
        )
        assert day_totals == [DAILY_LIMIT] * 3, f"an account's day did not fill: {day_totals}"
        rows = _rows(campaign_id)
        sent = {r.email for r in rows if r.status == "sent"}
        assert sent == set(received), "the database and the servers disagree on what was sent"
        ids = {r.message_id for s in servers for r in s.received}
        assert ids == {r.message_id for r in rows if r.status == "sent"}
        assert status_counts(campaign_id) == {
            "sent": REDIS_DRILL_SENT,
            "pending": REDIS_DRILL_RECIPIENTS - REDIS_DRILL_SENT,
        }
        for server, account_id in zip(servers, account_ids, strict=True):
            assert {r.recipients[0] for r in server.received} == {
                r.email for r in rows if r.status == "sent" and r.account_id == account_id
            }
        # The rest waits for the first moment an account has room again: the earlier
        # sender's first send of the day leaving its window.
        db.session.rollback()
        waiting = db.session.execute(
            select(Recipient.next_attempt_at).where(
                Recipient.campaign_id == campaign_id, Recipient.status == "pending"
            )
        ).scalars()
        frees = first_earlier + timedelta(days=1)
        for at in waiting:
            assert abs((at - frees).total_seconds()) < 5, f"pending until {at}, room at {frees}"
        # What the API shows agrees with what the servers received (plus the earlier day).
        assert _sent_today(drill.api) == dict(zip(account_ids, day_totals, strict=True))
        assert took <= FAULT_BUDGET_SECONDS


def test_redis_restarted_without_persistence_mid_campaign_keeps_every_daily_limit(
    drill, smtp_servers
):
    gone: list[float] = []
    _redis_drill(
        drill,
        smtp_servers,
        lambda: gone.append(drill.redis.restart_without_persistence(REDIS_AWAY_SECONDS)),
        "redis-restart",
    )
    assert drill.redis.starts == 2
    print(f"[drill redis-restart] Redis was away {gone[0]:.2f} s")


def test_redis_flushall_mid_campaign_keeps_every_daily_limit(drill, smtp_servers):
    _redis_drill(drill, smtp_servers, drill.redis.flushall, "redis-flushall")


# --- PostgreSQL drill -------------------------------------------------------------------


def _probe_outage(api: ApiClient, campaign_id: int, account_id: int) -> Counter[str]:
    """Every kind of call once, while PostgreSQL is down; each must be a 503 with
    Retry-After and the JSON error shape (health: its own body)."""
    seen: Counter[str] = Counter()
    health = api.client.get("/api/v1/health")
    assert health.status_code == 503, health.get_data(as_text=True)
    assert health.get_json() == {"status": "degraded", "database": "down", "redis": "ok"}
    seen["health 503"] += 1
    calls = [
        ("GET", "/api/v1/accounts", None),
        ("GET", f"/api/v1/accounts/{account_id}", None),
        ("GET", "/api/v1/campaigns", None),
        ("GET", f"/api/v1/campaigns/{campaign_id}", None),
        ("GET", f"/api/v1/campaigns/{campaign_id}/recipients", None),
        ("GET", "/api/v1/limits", None),
        ("GET", "/api/v1/suppressions", None),
        ("POST", "/api/v1/suppressions", {"email": "nobody@drill.example"}),
        ("POST", f"/api/v1/campaigns/{campaign_id}/pause", None),
    ]
    for method, path, body in calls:
        response = api.get(path) if method == "GET" else api.post(path, json=body)
        text_body = response.get_data(as_text=True)
        assert response.status_code == 503, f"{method} {path}: {response.status_code} {text_body}"
        assert response.headers.get("Retry-After", "").isdigit(), f"{method} {path}: no Retry-After"
        error = (response.get_json(silent=True) or {}).get("error") or {}
        assert error.get("code") == "unavailable" and error.get("message"), (
            f"{method} {path}: {text_body}"
        )
        seen[f"{method} 503"] += 1
    return seen


def test_postgres_stopped_for_20_seconds_mid_campaign_loses_no_known_outcome(
    drill, cluster, smtp_servers, caplog
):
    caplog.set_level(logging.WARNING)
    accounts = [
        factories.create_account(**smtp_account(server), daily_limit=1000)
        for server in smtp_servers
    ]
    emails = [f"p{i}@gmail.com" for i in range(PG_DRILL_RECIPIENTS)]
    # Plain ids: a rolled-back session would reload attributes from the stopped server.
    campaign_id = factories.create_running_campaign(emails).id
    account_ids = [a.id for a in accounts]
    # A request that succeeds first: this process's outage log starts from "all well".
    assert _sent_today(drill.api) == dict.fromkeys(account_ids, 0)
    stack = drill.stack
    with _evidence(stack, cluster.logfile):
        _start(stack)
        _wait_for(
            lambda: _sent_count(campaign_id) >= FAULT_AFTER_SENT,
            120,
            f"{FAULT_AFTER_SENT} sent before the fault",
            lambda: status_counts(campaign_id),
        )
        at_fault = status_counts(campaign_id)
        fault_at = time.monotonic()
        cluster.stop("fast")
        stopped_at = time.monotonic()
        received_when_stopped = _total_received(smtp_servers)
        probes: Counter[str] = Counter()
        try:
            # A worker that joins during the outage takes send tasks it cannot run yet; the
            # first worker's processes are inside their batches, holding SMTP replies.
            stack.start_worker("worker2")
            while time.monotonic() - stopped_at < PG_OUTAGE_SECONDS:
                probes += _probe_outage(drill.api, campaign_id, account_ids[0])
                time.sleep(1)
        finally:
            received_while_down = _total_received(smtp_servers) - received_when_stopped
            down_for = time.monotonic() - stopped_at
            cluster.start()
        back_at = time.monotonic()
        assert received_when_stopped < PG_DRILL_RECIPIENTS - 200, (
            f"the fault came too late to prove anything: {at_fault}"
        )
        # No send starts while the database is away: only a message already inside its
        # SMTP transaction when it went (one per process) may still reach a server.
        assert received_while_down <= stack.concurrency, (
            f"{received_while_down} messages reached the servers while PostgreSQL was down"
        )
        _wait_for(
            lambda: _finished(campaign_id),
            FAULT_BUDGET_SECONDS - (back_at - fault_at),
            "campaign finished after the outage",
            lambda: status_counts(campaign_id),
        )
        took = time.monotonic() - fault_at
        retried = stack.log("worker2").count("retry: Retry in")
        print(
            f"\n[drill postgres-stop] fault at {at_fault.get('sent', 0)} sent "
            f"({received_when_stopped} received); PostgreSQL down {down_for:.1f} s; campaign "
            f"finished {took:.1f} s after the fault ({time.monotonic() - back_at:.1f} s after "
            f"PostgreSQL was back); received while down: {received_while_down}; send tasks "
            f"retried by the worker that joined during the outage: {retried}; "
            f"API probes {dict(probes)}"
        )
        _workers_alive(stack)

        received = _received(smtp_servers)
        assert max(received.values()) == 1, "a recipient received two copies"
        assert status_counts(campaign_id) == {"sent": PG_DRILL_RECIPIENTS}
        rows = _rows(campaign_id)
        assert {r.email for r in rows if r.status == "sent"} == set(received) == set(emails)
        ids = [r.message_id for s in smtp_servers for r in s.received]
        assert len(ids) == len(set(ids)) == PG_DRILL_RECIPIENTS
        assert set(ids) == {r.message_id for r in rows}
        db.session.rollback()
        unknown_events = db.session.execute(
            select(func.count()).select_from(Event).where(Event.type == "unknown")
        ).scalar_one()
        assert unknown_events == 0
        # The API: one line per outage in this process, no traceback per request.
        started = [r for r in caplog.records if r.getMessage() == "outage.started"]
        assert len(started) == 1, [r.getMessage() for r in started]
        assert not [r for r in caplog.records if r.exc_info and r.name.startswith(("app", "flask"))]
        assert _sent_today(drill.api) == {
            account_id: len(server.received)
            for account_id, server in zip(account_ids, smtp_servers, strict=True)
        }
        assert any(r.getMessage() == "outage.ended" for r in caplog.records)
        assert took <= FAULT_BUDGET_SECONDS
