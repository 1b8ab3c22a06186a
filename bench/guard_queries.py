"""The guards' queries against a 1M-recipient campaign: what one inline check, one pass of
the every-minute task and the daily summary cost when the events table holds 2M rows
(a queued and an outcome event per recipient, over three days, 100 accounts, each
resumed once two days ago).

Throwaway database (SENDFLEET_BENCH_PG admin DSN), filled by SQL; prints wall times and
the rows each query touched (EXPLAIN ANALYZE buffers), next to a raw baseline in the same
run: counting the campaign's outcome events whole, which is what a naive guard would do.

    .venv/bin/python bench/guard_queries.py [--recipients 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PG_ADMIN, admin

REDIS_URL = os.environ.get("SENDFLEET_BENCH_REDIS", "redis://127.0.0.1:6379/15")

FILL = """
INSERT INTO clients (id, name) VALUES (2, 'bench') ON CONFLICT DO NOTHING;
INSERT INTO accounts (id, client_id, name, provider, email, sending_domain, host, port,
                      security, daily_limit)
SELECT a, 1, 'acct-' || a, 'smtp', 's' || a || '@d' || (a %% 10) || '.example',
       'd' || (a %% 10) || '.example', '127.0.0.1', 25, 'none', 100000
FROM generate_series(1, 100) a;
INSERT INTO campaigns (id, client_id, name, subject, body_text, status, updated_at)
VALUES (1, 1, 'big', 's', 'b', 'running', %(t0)s);
INSERT INTO events (type, campaign_id, recipient_id, account_id, created_at)
SELECT t.type, 1, r, 1 + r %% 100,
       %(t0)s + (r * interval '1 second' * 259200 / %(n)s) + t.lag
FROM generate_series(1, %(n)s) r,
     LATERAL (VALUES ('queued', interval '0'),
                     (CASE WHEN r %% 33 = 0 THEN 'bounced' ELSE 'sent' END, interval '2 s')
             ) AS t(type, lag);
INSERT INTO events (type, account_id, created_at)
SELECT 'account_resumed', a, %(t0)s + interval '1 day' FROM generate_series(1, 100) a;
ANALYZE events;
"""




def settings_for(database_url: str) -> Any:
    from cryptography.fernet import Fernet

    from app.settings import Settings

    return Settings.model_validate(
        {
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "secret_key": "bench",
            "credentials_key": Fernet.generate_key().decode(),
            "company_address": "Bench Ltd, 1 Bench Street",
            "log_level": "WARNING",
        }
    )


def timed(label: str, session: Any, statement: Any, params: dict[str, Any]) -> None:
    from sqlalchemy import text

    started = time.perf_counter()
    session.execute(statement, params).all()
    took = (time.perf_counter() - started) * 1000
    plan = session.execute(
        text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement.text}"), params
    ).scalar()[0]
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    print(f"{label:<52} {took:9.1f} ms  {buffers:>8} buffers")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1_000_000)
    n = parser.parse_args().recipients
    name = f"sendfleet_bench_guards_{uuid.uuid4().hex[:6]}"
    admin(f'CREATE DATABASE "{name}"')
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        run(database_url, n)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(database_url: str, n: int) -> None:
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app
    from app.extensions import db
    from worker.jobs import daily_summary, guard_sweep, rate_guards

    settings = settings_for(database_url)
    app = create_app(settings)
    t0 = datetime.now(UTC) - timedelta(days=3)
    now = datetime.now(UTC)
    with app.app_context():
        upgrade()
        started = time.perf_counter()
        with db.engine.begin() as conn:
            conn.exec_driver_sql(FILL, {"t0": t0, "n": n})
        print(f"filled {2 * n} events in {time.perf_counter() - started:.0f} s")
        session = db.session
        window = {
            "since": now - timedelta(seconds=settings.guard_window_seconds),
            "window": settings.guard_window_sends,
        }
        naive = text(
            "SELECT count(*) FILTER (WHERE type = 'bounced'), count(*) FROM events "
            "WHERE campaign_id = 1 AND type IN ('sent', 'bounced', 'failed')"
        )
        timed("baseline: the campaign's outcomes counted whole", session, naive, {})
        timed(
            "inline: campaign rate (last 500)",
            session,
            rate_guards.CAMPAIGN_OUTCOMES,
            {"campaign_id": 1, **window},
        )
        timed(
            "inline: account rate (last 500)",
            session,
            rate_guards.ACCOUNTS_OUTCOMES,
            {"ids": [7], **window},
        )
        ids = list(range(7, 101, 10))
        timed(
            "inline: domain rate, 10 accounts (last 500)",
            session,
            rate_guards.ACCOUNTS_OUTCOMES,
            {"ids": ids, **window},
        )
        timed(
            "task: refusals of the last 5 min",
            session,
            guard_sweep.RECENT_REFUSALS,
            {"since": now - guard_sweep.SWEEP_LOOKBACK, "limit": guard_sweep.MAX_PAIRS},
        )
        timed(
            "daily summary: the day's outcomes grouped",
            session,
            daily_summary.OUTCOMES,
            {"since": now - daily_summary.DAY, "until": now},
        )
        session.rollback()
        db.engine.dispose()


if __name__ == "__main__":
    main()
