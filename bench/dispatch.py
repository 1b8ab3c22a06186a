"""The dispatcher at the seed's scale: 1,200 accounts and one campaign of 1,000,000 due
recipients over 10,000 domains, limits lifted. Times full dispatcher passes (claim, drop
suppressed, choose accounts, reserve every window, mark queued) in process, against the
same run's raw baseline: the pass's claim statement alone (the index scan that any
dispatcher must do). Also counts how many send tasks a pass makes and how many rows each
carries, since a task per recipient is what made throughput fall with many accounts.

Two more running campaigns of `--sent` sent recipients each: one with 10 rows still being
sent (the end of a campaign, kept running until they finish), one with nothing left.
Every pass decides whether each running campaign is done; that decision is timed on its
own, against the statement it replaced (every row of the campaign walked) as baseline,
and the passes are timed with each.

Usage: .venv/bin/python bench/dispatch.py [--accounts 1200] [--recipients 1000000]
       [--sent 1000000]
Needs PostgreSQL and Redis on 127.0.0.1 (Redis DB 9 of BENCH_REDIS is flushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg2
import redis
from cryptography.fernet import Fernet
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import admin  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9")

# The completion statement before recipient_counts answered it (the baseline): no index
# holds the four statuses since migration 0015, so it walked the campaign's rows.
WALKING_COMPLETION = """
    WITH done AS (
        UPDATE campaigns AS c SET status = 'completed', completed_at = :now, updated_at = :now
        WHERE c.id = ANY(:ids) AND c.status = 'running' AND NOT EXISTS (
            SELECT 1 FROM recipients r WHERE r.campaign_id = c.id
              AND r.status IN ('pending', 'deferred', 'queued', 'sending'))
        RETURNING c.id
    )
    INSERT INTO events (type, campaign_id)
    SELECT 'campaign_completed', id FROM done
    RETURNING campaign_id
"""


def seed(url: str, accounts: int, recipients: int) -> int:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO accounts (client_id, name, provider, email, sending_domain, host, port,"
            " security, daily_limit, warmup_enabled, per_minute_limit)"
            " SELECT (SELECT min(id) FROM clients), 'acct-' || g, 'smtp',"
            " 'sender' || g || '@brand' || (g %% 40) || '.example', 'brand' || (g %% 40) || "
            " '.example', '127.0.0.1', 25, 'none', 10000000, false, 10000000"
            " FROM generate_series(1, %s) g",
            (accounts,),
        )
        cur.execute(
            "INSERT INTO campaigns (client_id, name, subject, body_text, status) VALUES"
            " ((SELECT min(id) FROM clients), 'big', 'Hi', 'Hello', 'running') RETURNING id"
        )
        campaign_id = int(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO recipients (campaign_id, email, domain, fields)"
            " SELECT %s, 'p' || g || '@d' || (g %% 10000) || '.example',"
            " 'd' || (g %% 10000) || '.example', '{}'::jsonb FROM generate_series(1, %s) g",
            (campaign_id, recipients),
        )
    conn.close()
    return campaign_id


def seed_sent(url: str, sent: int) -> tuple[int, int]:
    """Two running campaigns of `sent` sent rows: the first with 10 more still `sending`
    (addresses that sort last, as the walk met them), the second with nothing left, kept
    `paused` so the passes leave it alone (the timing sets it running in a rolled-back
    transaction)."""
    conn = psycopg2.connect(url)
    ids = []
    with conn, conn.cursor() as cur:
        for status in ("running", "paused"):
            cur.execute(
                "INSERT INTO campaigns (client_id, name, subject, body_text, status) VALUES"
                " ((SELECT min(id) FROM clients), 'sent', 'Hi', 'Hello', %s) RETURNING id",
                (status,),
            )
            ids.append(int(cur.fetchone()[0]))
            cur.execute(
                "INSERT INTO recipients (campaign_id, email, domain, fields, status, sent_at)"
                " SELECT %s, 's' || g || '@d' || (g %% 10000) || '.example',"
                " 'd' || (g %% 10000) || '.example', '{}'::jsonb, 'sent', now()"
                " FROM generate_series(1, %s) g",
                (ids[-1], sent),
            )
        cur.execute(
            "INSERT INTO recipients (campaign_id, email, domain, fields, status, sending_since)"
            " SELECT %s, 'zz' || g || '@late.example', 'late.example', '{}'::jsonb, 'sending',"
            " now() FROM generate_series(1, 10) g",
            (ids[0],),
        )
    conn.close()
    return ids[0], ids[1]


def vacuum(url: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute("VACUUM ANALYZE recipients")
    conn.close()


def time_completion(statement: Any, campaign_ids: list[int], done_id: int) -> float:
    """One completion decision over `campaign_ids` (the finished campaign set running for
    it), as the dispatcher takes it after locking them; rolled back."""
    from app.db import unit_of_work
    from worker.jobs.dispatch_sql import LOCK_RUNNING_CAMPAIGNS

    with unit_of_work() as session:
        session.execute(
            text("UPDATE campaigns SET status = 'running' WHERE id = :id"), {"id": done_id}
        )
        locked = set(session.execute(LOCK_RUNNING_CAMPAIGNS).scalars())
        assert set(campaign_ids) <= locked
        started = time.perf_counter()
        session.execute(statement, {"ids": campaign_ids, "now": datetime.now(UTC)}).all()
        elapsed = time.perf_counter() - started
        session.rollback()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1200)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--sent", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    db_name = f"sendfleet_bench_dispatch_{os.getpid()}"
    url = f"postgresql://postgres@127.0.0.1:5432/{db_name}"
    admin(f'CREATE DATABASE "{db_name}"')
    os.environ.update(
        {
            "SENDFLEET_ENV": "development",
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "SECRET_KEY": uuid.uuid4().hex,
            "CREDENTIALS_KEY": Fernet.generate_key().decode(),
            "COMPANY_ADDRESS": "Bench Ltd, 1 Test Street, Berlin",
            "LIMIT_SYSTEM_PER_MINUTE": "100000000",
            "LIMIT_ACCOUNT_PER_MINUTE": "100000000",
            "LIMIT_SENDING_DOMAIN_PER_DAY": "100000000",
            "LIMIT_RECIPIENT_DOMAIN_PER_DAY": "100000000",
            "LIMIT_FREEMAIL_PER_DAY": "100000000",
            "DISPATCH_MAX_IN_FLIGHT": "100000000",
            "LOG_LEVEL": "WARNING",
        }
    )
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        t0 = time.perf_counter()
        campaign_id = seed(url, args.accounts, args.recipients)
        open_id, done_id = seed_sent(url, args.sent)
        vacuum(url)
        seeded = time.perf_counter() - t0
        from app import create_app
        from app.db import unit_of_work
        from app.services.limits import make_limiter
        from worker.jobs import dispatch as dispatch_module
        from worker.jobs.dispatch import dispatch_batch
        from worker.jobs.dispatch_sql import CLAIM_DUE, COMPLETE_CAMPAIGNS

        app = create_app()
        settings = app.extensions["settings"]
        walking = text(WALKING_COMPLETION)
        decisions: dict[tuple[str, str], list[float]] = defaultdict(list)
        old_ticks: list[float] = []
        ticks: list[float] = []
        claims: list[float] = []
        tasks: list[int] = []
        queued: list[int] = []
        with app.app_context():
            limiter = make_limiter(app.extensions["redis"], settings)
            for _ in range(args.passes):
                with unit_of_work() as session:
                    started = time.perf_counter()
                    session.execute(
                        CLAIM_DUE,
                        {
                            "campaign_ids": [campaign_id],
                            "quotas": [settings.dispatch_batch_size],
                            "due_by": datetime.now(UTC) + timedelta(seconds=5),
                            "taken": [],
                        },
                    ).all()
                    claims.append(time.perf_counter() - started)
                    session.rollback()
                # The same pass with the walking completion statement (baseline); its rows
                # are queued like any pass's, so the two take turns over the same table.
                with (
                    mock.patch.object(dispatch_module, "COMPLETE_CAMPAIGNS", walking),
                    unit_of_work() as session,
                ):
                    started = time.perf_counter()
                    dispatch_batch(session, limiter, settings, now=datetime.now(UTC))
                old_ticks.append(time.perf_counter() - started)
                with unit_of_work() as session:
                    started = time.perf_counter()
                    result = dispatch_batch(session, limiter, settings, now=datetime.now(UTC))
                ticks.append(time.perf_counter() - started)
                tasks.append(len(result.batches))
                queued.append(result.queued)
                assert not result.completed_campaigns
            cases = {"work left": [open_id], "nothing left": [done_id]}
            cases["all running"] = [campaign_id, open_id, done_id]
            for _ in range(args.passes):
                for case, ids in cases.items():
                    decisions[case, "walking"].append(time_completion(walking, ids, done_id))
                    decisions[case, "new"].append(time_completion(COMPLETE_CAMPAIGNS, ids, done_id))
    finally:
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{db_name}"')
    tick, claim = statistics.median(ticks), statistics.median(claims)
    old_tick = statistics.median(old_ticks)
    print(f"accounts                  {args.accounts:10d}")
    print(f"due recipients            {args.recipients:10d}   (seeded in {seeded:.1f} s)")
    print(f"rows per pass             {statistics.median(queued):10.0f}")
    passes = args.passes
    print(f"dispatcher pass           {tick * 1000:10.1f} ms  (median of {passes}; target < 1000)")
    slower = old_tick / tick
    print(f"  walking completion      {old_tick * 1000:10.1f} ms  (baseline, {slower:.1f}x)")
    print(f"claim statement alone     {claim * 1000:10.1f} ms  (baseline)")
    print(f"ratio claim / pass        {claim / tick:10.2f}")
    rows_per_task = statistics.median(queued) / max(statistics.median(tasks), 1)
    tasks_per_pass = statistics.median(tasks)
    print(f"send tasks per pass       {tasks_per_pass:10.0f}   ({rows_per_task:.1f} rows each)")
    print(f"completion decision, {args.sent:,} sent rows a campaign (median of {passes}):")
    for case in cases:
        before = statistics.median(decisions[case, "walking"])
        after = statistics.median(decisions[case, "new"])
        print(
            f"  {case:22}  {before * 1000:9.2f} ms walking (baseline) -> {after * 1000:7.2f} ms"
            f"  ({before / after:,.0f}x)"
        )


if __name__ == "__main__":
    main()
