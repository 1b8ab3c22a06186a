"""API latencies at the seed's scale, each next to raw baselines measured in the same run.

- ours: GET /api/v1/campaigns/<id> (a campaign of 1,000,000 recipients), GET
  /api/v1/campaigns (the first page: the big campaign and 99 small ones) and GET
  /api/v1/accounts (1,200 accounts, the limiter's windows rebuilt into Redis as after a
  day of sending), through the app's test client with an API key made by
  `flask keys create`: median and p95 of N calls after a few warm-up calls, twice: right
  after VACUUM, and after a mixed workload changed 2 % of the big campaign's rows (the
  visibility map no longer current, as during a send);
- baselines, same run, same database, through psycopg2: `SELECT 1` (one round trip), the
  bare SQL each endpoint needs (the campaign row and its counts as the app reads them, the
  page of campaigns with theirs, the accounts' rows), and the plain GROUP BY over the big
  campaign's recipients (index-only scan of ix_recipients_campaign_status, with its heap
  fetches), which is what the counts cost without the counter table;
- write overhead of the counter triggers (migration 0013), by bench/count_writes.py: the
  importer's INSERT ... SELECT, the send path's per-row updates and the dispatcher's batch,
  each with the triggers enabled and disabled, alternating in the same run
  (`--skip-writes` leaves it out).

Data (INSERT ... SELECT generate_series in the server): 1,200 accounts; campaign 1 with
R recipients, the first fifth attempted as a run leaves them (sent, bounced, deferred,
failed, unknown, queued, sending, suppressed, unsubscribed), the rest pending; 99 finished
campaigns of 1,000 recipients; a queued event per dispatched row and an outcome event per
attempt, over the last day.

Usage: .venv/bin/python bench/api_latency.py [--recipients 1000000] [--accounts 1200]
    [--calls 30] [--rounds 1000] [--skip-writes] [--json]
Needs PostgreSQL on 127.0.0.1 (user postgres, trust) and Redis at SENDFLEET_BENCH_REDIS
(default redis://127.0.0.1:6379/10; that DB is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import count_writes  # noqa: E402
from bench.common import PG_ADMIN, admin  # noqa: E402

REDIS_URL = os.environ.get("SENDFLEET_BENCH_REDIS", "redis://127.0.0.1:6379/10")
SMALL_CAMPAIGNS = 99
SMALL_SIZE = 1000
TARGETS_MS = {"campaign": 100.0, "accounts": 300.0}

# Campaign 1's attempted fifth, by g % 100: what a run leaves behind.
STATUS_CASE = """
    CASE WHEN g > %(attempted)s THEN 'pending'
         WHEN g %% 100 < 60 THEN 'sent'
         WHEN g %% 100 < 70 THEN 'bounced'
         WHEN g %% 100 < 78 THEN 'deferred'
         WHEN g %% 100 < 83 THEN 'failed'
         WHEN g %% 100 < 86 THEN 'unknown'
         WHEN g %% 100 < 92 THEN 'queued'
         WHEN g %% 100 < 95 THEN 'sending'
         WHEN g %% 100 < 97 THEN 'suppressed'
         ELSE 'unsubscribed' END
"""
FILL = [
    """
    INSERT INTO accounts (id, client_id, name, provider, email, sending_domain, host, port,
                          security, username, daily_limit, warmup_enabled, warmup_day)
    SELECT id, 1, 'acct' || id, 'smtp', 'sender' || id || '@mail' || id || '.example',
           'mail' || id || '.example', 'smtp.relay.example', 587, 'starttls',
           'sender' || id, 2000, id %% 7 = 3, 1 + id %% 30
    FROM generate_series(1, %(accounts)s) id;
    SELECT setval('accounts_id_seq', %(accounts)s);
    """,
    """
    INSERT INTO campaigns (id, client_id, name, subject, body_text, status, started_at,
                           completed_at)
    SELECT j, 1, 'bench ' || j, 'Hi', 'Hi {{ first_name }}',
           CASE WHEN j = 1 THEN 'running' ELSE 'completed' END,
           %(t0)s - interval '1 day', CASE WHEN j > 1 THEN %(t0)s - interval '1 hour' END
    FROM generate_series(1, %(campaigns)s) j;
    SELECT setval('campaigns_id_seq', %(campaigns)s);
    """,
    f"""
    INSERT INTO recipients (campaign_id, email, domain, fields, status, attempts, account_id,
                            message_id, queued_at, sent_at, last_smtp_code, updated_at)
    SELECT 1, 'r' || g || '@co' || g %% 20000 || '.example', 'co' || g %% 20000 || '.example',
           jsonb_build_object('first_name', 'Ann', 'company', 'Firm ' || g %% 5000),
           status, CASE WHEN status IN ('pending', 'queued', 'suppressed') THEN 0 ELSE 1 END,
           CASE WHEN status NOT IN ('pending', 'suppressed') THEN 1 + g %% %(accounts)s END,
           CASE WHEN status NOT IN ('pending', 'queued', 'suppressed')
                THEN '<' || g || '.bench@sendfleet.example>' END,
           CASE WHEN status NOT IN ('pending', 'suppressed') THEN at END,
           CASE WHEN status IN ('sent', 'unsubscribed') THEN at END,
           CASE status WHEN 'sent' THEN 250 WHEN 'unsubscribed' THEN 250 WHEN 'bounced' THEN 550
                       WHEN 'deferred' THEN 451 WHEN 'failed' THEN 554 END,
           coalesce(at, %(t0)s - interval '1 day')
    FROM (SELECT g, {STATUS_CASE} AS status,
                 CASE WHEN g <= %(attempted)s
                      THEN %(t0)s - (g::float / %(attempted)s) * interval '23 hours' END AS at
          FROM generate_series(1, %(recipients)s) g) s;
    """,
    """
    INSERT INTO recipients (campaign_id, email, domain, status, attempts, account_id,
                            message_id, queued_at, sent_at, last_smtp_code, updated_at)
    SELECT c, 'r' || g || '@small' || c || '.example', 'small' || c || '.example',
           CASE WHEN g %% 20 = 0 THEN 'bounced' ELSE 'sent' END, 1, 1 + g %% %(accounts)s,
           '<' || c || '.' || g || '.small@sendfleet.example>', %(t0)s - interval '2 hours',
           %(t0)s - interval '2 hours', 250, %(t0)s - interval '2 hours'
    FROM generate_series(2, %(campaigns)s) c, generate_series(1, %(small)s) g;
    """,
    # As the dispatcher and the send path write them: queued for every dispatched row, an
    # outcome for every attempt, in time order.
    """
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data, created_at)
    SELECT type, campaign_id, recipient_id, account_id, data, at FROM (
        SELECT 'queued' AS type, campaign_id, id AS recipient_id, account_id,
               '{}'::jsonb AS data, queued_at AS at
        FROM recipients WHERE queued_at IS NOT NULL
        UNION ALL
        SELECT CASE status WHEN 'unsubscribed' THEN 'sent' ELSE status END, campaign_id, id,
               account_id, jsonb_build_object('smtp_code', last_smtp_code, 'stage', 'data'),
               updated_at
        FROM recipients
        WHERE status IN ('sent', 'bounced', 'deferred', 'failed', 'unknown', 'unsubscribed')
        UNION ALL
        SELECT 'unsubscribed', campaign_id, id, account_id, '{}'::jsonb,
               updated_at + interval '1 minute'
        FROM recipients WHERE status = 'unsubscribed'
        UNION ALL
        SELECT 'suppressed', campaign_id, id, NULL, '{"stage": "dispatch"}'::jsonb, updated_at
        FROM recipients WHERE status = 'suppressed'
    ) e ORDER BY at;
    """,
]

BARE_CAMPAIGN = "SELECT * FROM campaigns WHERE id = 1"
BARE_PAGE = "SELECT * FROM campaigns WHERE client_id = 1 ORDER BY id DESC LIMIT 101"
BARE_ACCOUNTS = "SELECT * FROM accounts WHERE client_id = 1 ORDER BY id"
GROUP_BY = (
    "SELECT campaign_id, status, count(*) FROM recipients WHERE campaign_id = ANY(%s) "
    "GROUP BY campaign_id, status"
)
COUNTER_READ = (
    "SELECT campaign_id, status, sum(n) FROM recipient_counts WHERE campaign_id = ANY(%s) "
    "GROUP BY campaign_id, status"
)
# 2 % of the big campaign's rows change status, scattered over its pages.
WORKLOAD = [
    "UPDATE recipients SET status = 'queued' WHERE campaign_id = 1 AND status = 'pending' "
    "AND id % 97 = 0",
    "UPDATE recipients SET status = 'sent' WHERE campaign_id = 1 AND status = 'pending' "
    "AND id % 89 = 0",
]




def app_env(database_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": "bench",
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "COMPANY_ADDRESS": "Bench Ltd, 1 Bench Street",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("SENDFLEET_TEST_PG", None)
    return env


def flask_cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"flask {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def fill(database_url: str, recipients: int, accounts: int, t0: datetime) -> int:
    params = {
        "accounts": accounts,
        "campaigns": 1 + SMALL_CAMPAIGNS,
        "small": SMALL_SIZE,
        "recipients": recipients,
        "attempted": recipients // 5,
        "t0": t0,
    }
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            for statement in FILL:
                cur.execute(statement, params)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE)")  # what autovacuum would have done by now
            cur.execute("SELECT count(*) FROM events")
            events = int(cur.fetchone()[0])
    finally:
        conn.close()
    return events


def timings(fn: Callable[[], object], calls: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {
        "median": statistics.median(seconds) * 1000,
        "p95": seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))] * 1000,
    }


def has_counters(cur: Any) -> bool:
    cur.execute("SELECT to_regclass('recipient_counts') IS NOT NULL")
    return bool(cur.fetchone()[0])


def measure(client: Any, headers: dict[str, str], cur: Any, calls: int) -> dict[str, Any]:
    """The three endpoints and their baselines, in the database's present state."""
    page_ids = list(range(1, 2 + SMALL_CAMPAIGNS))

    def get(path: str) -> Callable[[], object]:
        def call() -> object:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.status_code)
            return response

        return call

    def sql(statement: str, args: Any = None) -> Callable[[], object]:
        def run() -> object:
            cur.execute(statement, args)
            return cur.fetchall()

        return run

    counts_sql = COUNTER_READ if has_counters(cur) else GROUP_BY
    out: dict[str, Any] = {
        "campaign": timings(get("/api/v1/campaigns/1"), calls),
        "list": timings(get("/api/v1/campaigns"), calls),
        "accounts": timings(get("/api/v1/accounts"), calls),
        "select1": timings(sql("SELECT 1"), calls),
        "bare_campaign": timings(lambda: (sql(BARE_CAMPAIGN)(), sql(counts_sql, ([1],))()), calls),
        "bare_list": timings(lambda: (sql(BARE_PAGE)(), sql(counts_sql, (page_ids,))()), calls),
        "bare_accounts": timings(sql(BARE_ACCOUNTS), calls),
        "group_by": timings(sql(GROUP_BY, ([1],)), max(5, calls // 3)),
    }
    cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + GROUP_BY, ([1],))
    plan = cur.fetchone()[0][0]["Plan"]
    out["heap_fetches"] = _find(plan, "Heap Fetches")
    out["scan"] = _find(plan, "Node Type", lambda node: "Scan" in node.get("Node Type", ""))
    body = client.get("/api/v1/campaigns/1", headers=headers).get_json()
    cur.execute(GROUP_BY, ([1],))
    plain = {status: n for _, status, n in cur.fetchall()}
    out["exact"] = {k: v for k, v in body["counts"].items() if v} == plain
    return out


def _find(
    plan: dict[str, Any], key: str, match: Callable[[dict[str, Any]], bool] | None = None
) -> Any:
    if key in plan and (match is None or match(plan)):
        return plan[key]
    for child in plan.get("Plans", []):
        found = _find(child, key, match)
        if found is not None:
            return found
    return None


def run(
    database_url: str, env: dict[str, str], key: str, args: argparse.Namespace
) -> dict[str, Any]:
    from app import create_app
    from app.db import unit_of_work
    from app.extensions import db
    from app.settings import Settings
    from rotator.limiter import Limiter
    from worker.jobs.windows_rebuild import rebuild_windows

    settings = Settings.model_validate(
        {
            k.lower(): env[k]
            for k in (
                "DATABASE_URL",
                "REDIS_URL",
                "SECRET_KEY",
                "CREDENTIALS_KEY",
                "COMPANY_ADDRESS",
                "LOG_LEVEL",
            )
        }
    )
    app = create_app(settings)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    out: dict[str, Any] = {}
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        with app.app_context():
            redis = app.extensions["redis"]
            redis.flushdb()
            with unit_of_work() as session:
                rebuild_windows(
                    session, Limiter(redis, require_epoch=True), settings, now=datetime.now(UTC)
                )
            out["vacuumed"] = measure(client, headers, cur, args.calls)
            started = time.perf_counter()
            changed = 0
            for statement in WORKLOAD:
                cur.execute(statement)
                changed += cur.rowcount
            out["workload"] = {"rows": changed, "seconds": time.perf_counter() - started}
            out["dirty"] = measure(client, headers, cur, args.calls)
            if not args.skip_writes:
                out["writes"] = count_writes.write_overhead(cur, args.recipients // 2, args.rounds)
            redis.flushdb()
            db.engine.dispose()
    finally:
        conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_200)
    parser.add_argument("--calls", type=int, default=30, help="timed calls per endpoint")
    parser.add_argument("--rounds", type=int, default=1000, help="per-row updates per mode")
    parser.add_argument("--skip-writes", action="store_true", help="no write-overhead part")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()

    name = f"sendfleet_bench_api_{os.getpid()}"
    database_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    env = app_env(database_url)
    admin(f'CREATE DATABASE "{name}"')
    try:
        flask_cli(env, "db", "upgrade")
        t0 = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        events = fill(database_url, args.recipients, args.accounts, t0)
        print(
            f"data: {args.recipients:,} recipients in campaign 1, {SMALL_CAMPAIGNS} campaigns "
            f"of {SMALL_SIZE:,}, {args.accounts:,} accounts, {events:,} events, "
            f"filled in {time.perf_counter() - started:.1f} s"
        )
        key = flask_cli(env, "keys", "create", "bench").strip().splitlines()[-1]
        out = run(database_url, env, key, args)
    finally:
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{name}"')
    report(out, args)
    if args.json:
        print(json.dumps(out, default=str))


def _t(figure: dict[str, float]) -> str:
    return f"median {figure['median']:7.1f} ms  p95 {figure['p95']:7.1f} ms"


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    for state, label in (("vacuumed", "after VACUUM"), ("dirty", "after the workload")):
        m = out[state]
        if state == "dirty":
            w = out["workload"]
            print(f"-- workload: {w['rows']:,} rows changed status in {w['seconds']:.1f} s")
        print(f"-- {label} ({args.calls} calls each)")
        one = m["select1"]["median"]
        for endpoint, bare, what in (
            ("campaign", "bare_campaign", f"GET /api/v1/campaigns/1 ({args.recipients:,})"),
            ("list", "bare_list", "GET /api/v1/campaigns (100 a page)"),
            ("accounts", "bare_accounts", f"GET /api/v1/accounts ({args.accounts:,})"),
        ):
            ours, base = m[endpoint], m[bare]
            print(
                f"{what:38} {_t(ours)}  | bare SQL {base['median']:6.1f} ms "
                f"ratio {ours['median'] / base['median']:6.1f}  | SELECT 1 {one:.2f} ms "
                f"ratio {ours['median'] / one:6.0f}"
            )
        print(
            f"{'plain GROUP BY over campaign 1':38} {_t(m['group_by'])}  | "
            f"{m['scan']}, heap fetches {m['heap_fetches']}"
        )
        print(f"counts equal the plain GROUP BY: {m['exact']}")
    for endpoint, target in TARGETS_MS.items():
        worst = max(out[s][endpoint]["median"] for s in ("vacuumed", "dirty"))
        print(
            f"target {endpoint} < {target:.0f} ms (median): "
            + ("met" if worst < target else "NOT met")
            + ("" if args.recipients == 1_000_000 else f" (for {args.recipients:,})")
        )
    if "writes" in out:
        count_writes.report(out["writes"], args.recipients // 2)


if __name__ == "__main__":
    main()
