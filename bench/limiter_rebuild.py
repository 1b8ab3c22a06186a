"""Rebuilding the limiter's windows after a Redis loss, against one plain reservation
measured in the same run.

- ours: `rebuild_windows` (worker.jobs.windows_rebuild) over a throwaway database that
  holds a busy day, into an empty Redis DB (as after a restart without persistence), with
  the Redis client the app builds (its socket timeout included), in a child process so
  that its peak RSS is the rebuild's; a second, instrumented run splits the time into the
  database read, the Python mapping and the Redis write, without touching the app code;
- baseline: `Limiter.reserve_many` of a 200-request dispatcher batch, and `reserve` of one
  request, on the same Redis: each request's windows as the app's LimitTable gives them for
  the bench's accounts, campaigns and recipient domains, limits lifted so each is granted.

Data (filled by INSERT ... SELECT in the server): 4 clients; N accounts over them (a tenth
on gmail.com, a fifth sharing a domain by four, the rest on a domain of their own); 100
campaigns (a fifth with a daily cap); R recipients, 95 % `sent`, 4 % `deferred`/`bounced`,
1 % `queued`/`sending` with a reservation, to a mix of big freemail domains and a long
tail of company domains; a `queued` event for each dispatched row and an outcome event for
each attempt, over the 24 h before the reference time (2 % in its last minute); a few
limit overrides (recipient domains, client caps, a freemail sending domain, an account, the
system). History older than a day is not generated: the read is of a table holding one day.

Checks: the sends the rebuild counted equal the rows of SENDS_SINCE; the day windows of a
few accounts hold what `sends_in_last_day` counts for them; the system minute window holds
the sends of the last minute. Target for 1,000,000 recipients and 1,200 accounts on the
2-core dev machine: under 15 s, peak RSS under 1.5 GB.

--profile adds a cProfile run of the app's rebuild; --prototype runs, in a process of its
own, the prototype the app's rebuild now follows (bench/limiter_rebuild_prototype.py: at
1M, 58 s and 1.3 GB before, 16 s and 0.4 GB after) on the same data,
through the same checks.

Usage: .venv/bin/python bench/limiter_rebuild.py [--recipients 1000000] [--accounts 1200]
    [--profile] [--prototype]
Needs PostgreSQL on 127.0.0.1 (user postgres, trust) and Redis at SENDFLEET_BENCH_REDIS
(default redis://127.0.0.1:6379/10; that DB is flushed).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PG_ADMIN, admin  # noqa: E402

REDIS_URL = os.environ.get("SENDFLEET_BENCH_REDIS", "redis://127.0.0.1:6379/10")
CLIENTS = 4
CAMPAIGNS = 100
BATCH = 200  # requests per dispatcher batch in the baseline
BIG = 10**9
TARGET_SECONDS = 15.0
TARGET_RSS_MB = 1536

# Share of recipients per freemail domain; the rest go to company domains.
FREEMAIL_MIX = [
    ("gmail.com", 0.28),
    ("outlook.com", 0.08),
    ("yahoo.com", 0.05),
    ("hotmail.com", 0.03),
    ("web.de", 0.02),
    ("gmx.de", 0.015),
    ("icloud.com", 0.01),
]

FILL = [
    # The default client (id 1) comes from the migrations.
    """
    INSERT INTO clients (id, name)
    SELECT c, 'bench client ' || c FROM generate_series(2, %(clients)s) c;
    SELECT setval('clients_id_seq', %(clients)s);
    """,
    # Account id i belongs to client 1 + (i - 1) % clients; its rank within the client
    # decides the domain: a tenth gmail.com, a fifth four to a domain, the rest their own.
    """
    INSERT INTO accounts (id, client_id, name, provider, email, sending_domain, host, port,
                          security, username, daily_limit, warmup_enabled, warmup_day)
    SELECT id, client, 'acct' || id, CASE WHEN freemail THEN 'gmail' ELSE 'smtp' END,
           'sender' || id || '@' || domain, domain,
           CASE WHEN freemail THEN 'smtp.gmail.com' ELSE 'mail.' || domain END, 587,
           'starttls', 'sender' || id || '@' || domain,
           CASE WHEN freemail THEN 500 ELSE 2000 END, rank %% 7 = 3, 1 + rank %% 30
    FROM (
        SELECT id, client, rank, rank %% 10 = 0 AS freemail,
               CASE WHEN rank %% 10 = 0 THEN 'gmail.com'
                    WHEN rank %% 10 IN (1, 2) THEN 'c' || client || '-shared' || rank / 20
                                                 || '.example'
                    ELSE 'c' || client || '-mail' || rank || '.example' END AS domain
        FROM (SELECT id, 1 + (id - 1) %% %(clients)s AS client, (id - 1) / %(clients)s AS rank
              FROM generate_series(1, %(accounts)s) id) a
    ) b;
    SELECT setval('accounts_id_seq', %(accounts)s);
    """,
    """
    INSERT INTO campaigns (id, client_id, name, subject, body_text, status, daily_cap,
                           started_at)
    SELECT j, 1 + (j - 1) %% %(clients)s, 'bench ' || j, 'Hi', 'Hi {{ first_name }}',
           CASE WHEN j %% 10 = 0 THEN 'completed' ELSE 'running' END,
           CASE WHEN j %% 5 = 0 THEN 50000 END, %(t0)s - interval '3 days'
    FROM generate_series(1, %(campaigns)s) j;
    SELECT setval('campaigns_id_seq', %(campaigns)s);
    """,
    # Recipient g: campaign 1 + (g - 1) % campaigns, an account of that campaign's client;
    # the first 95 % sent, then 4 % deferred/bounced, the last 1 % queued/sending. `at` is
    # the attempt's time (2 % in the last minute); an in-flight row was queued < 3 min ago.
    # Like the send path, a sent row keeps its queued_at and reservation.
    """
    INSERT INTO recipients (id, campaign_id, email, domain, status, attempts, account_id,
                            reservation, message_id, next_attempt_at, queued_at,
                            sending_since, sent_at, last_smtp_code, created_at, updated_at)
    SELECT g, campaign, 'r' || g || '@' || domain, domain, status,
           CASE WHEN status = 'queued' THEN 0 ELSE 1 END, account,
           substr(md5(account::text), 1, 12) || '.' || g,
           CASE WHEN status <> 'queued' THEN '<' || g || '.bench@sendfleet.example>' END,
           CASE WHEN status = 'deferred' THEN at + interval '5 minutes' END,
           CASE WHEN in_flight THEN at ELSE at - interval '2 seconds' END,
           CASE WHEN status = 'sending' THEN at + interval '1 second' END,
           CASE WHEN status = 'sent' THEN at END,
           CASE status WHEN 'sent' THEN 250 WHEN 'deferred' THEN 451 WHEN 'bounced' THEN 550
           END,
           %(t0)s - interval '2 days', at
    FROM (
        SELECT g, campaign, client + %(clients)s * floor(x * ((%(accounts)s - client)
                   / %(clients)s + 1))::int AS account,
               CASE {domain_case}
                    ELSE 'co' || floor(%(companies)s * v * v)::int || '.example' END AS domain,
               CASE WHEN g <= %(sent)s THEN 'sent'
                    WHEN g <= %(attempted)s THEN
                        CASE WHEN g %% 2 = 0 THEN 'deferred' ELSE 'bounced' END
                    WHEN g %% 10 < 7 THEN 'queued' ELSE 'sending' END AS status,
               g > %(attempted)s AS in_flight,
               CASE WHEN g > %(attempted)s THEN %(t0)s - w * interval '180 seconds'
                    WHEN w < 0.02 THEN %(t0)s - (w / 0.02) * interval '60 seconds'
                    ELSE %(t0)s - interval '60 seconds'
                         - ((w - 0.02) / 0.98) * interval '86280 seconds' END AS at
        FROM (SELECT g, c AS campaign, 1 + (c - 1) %% %(clients)s AS client,
                     u, v, w, x
              FROM (SELECT g, 1 + (g - 1) %% %(campaigns)s AS c, random() AS u,
                           random() AS v, random() AS w, random() AS x
                    FROM generate_series(1, %(recipients)s) g) s) t
    ) r;
    SELECT setval('recipients_id_seq', %(recipients)s);
    """,
    # As the dispatcher and the send path write them (no client_id), in time order.
    """
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data, created_at)
    SELECT type, campaign_id, recipient_id, account_id, data, at FROM (
        SELECT 'queued' AS type, campaign_id, id AS recipient_id, account_id,
               '{}'::jsonb AS data, queued_at AS at
        FROM recipients
        UNION ALL
        SELECT status, campaign_id, id, account_id,
               jsonb_build_object('code', last_smtp_code, 'stage', 'data'), updated_at
        FROM recipients WHERE status IN ('sent', 'deferred', 'bounced')
    ) e ORDER BY at;
    """,
    """
    INSERT INTO limits (client_id, scope, key, per_minute, per_day) VALUES
        (NULL, 'system', '*', 2000, NULL),
        (1, 'recipient_domain', 'gmail.com', NULL, 800),
        (3, 'recipient_domain', 'outlook.com', 30, 500),
        (2, 'recipient_domain', 'co0.example', NULL, 50),
        (1, 'client', '1', 200, 400000),
        (3, 'client', '3', NULL, 300000),
        (2, 'sending_domain', 'gmail.com', NULL, 400),
        (1, 'account', '1', 5, NULL);
    """,
]




def bench_settings(database_url: str) -> Any:
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


def migrate(database_url: str) -> None:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    app = create_app(bench_settings(database_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def fill(database_url: str, recipients: int, accounts: int, t0: datetime) -> dict[str, int]:
    sent = round(recipients * 0.95)
    params = {
        "clients": CLIENTS,
        "accounts": accounts,
        "campaigns": CAMPAIGNS,
        "recipients": recipients,
        "sent": sent,
        "attempted": sent + round(recipients * 0.04),
        "companies": max(1000, recipients * 3 // 20),
        "t0": t0,
    }
    bound, cases = 0.0, []
    for domain, share in FREEMAIL_MIX:
        bound += share
        cases.append(f"WHEN u < {bound:.4f} THEN '{domain}'")
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT setseed(0.42)")  # the same data on every run
            for statement in FILL:
                cur.execute(statement.replace("{domain_case}", " ".join(cases)), params)
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            # What autovacuum would have done to a day's worth of rows.
            cur.execute("VACUUM (ANALYZE) recipients, events, accounts, campaigns, limits")
            cur.execute("SELECT count(*) FROM events")
            events = cur.fetchone()[0]
    finally:
        conn.close()
    return {"events": int(events), "sent": sent}


class TimedSession:
    """Hands the rebuild a session whose SENDS_SINCE result is fetched in timed chunks, so
    the database read is told apart from the mapping that consumes the rows."""

    def __init__(self, session: Any, fetch: int) -> None:
        self._session = session
        self._fetch = fetch
        self.read_started = 0.0
        self.read_seconds = 0.0

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        from app.services.sends import SENDS_SINCE

        # The rebuild reads SENDS_SINCE, wrapped to build each entry once (ENTRIES).
        if SENDS_SINCE.text not in (getattr(statement, "text", None) or ""):
            return self._session.execute(statement, *args, **kwargs)
        self.read_started = time.perf_counter()
        result = self._session.execute(statement, *args, **kwargs)
        self.read_seconds += time.perf_counter() - self.read_started
        return self._rows(result)

    def _rows(self, result: Any) -> Iterator[Any]:
        while True:
            started = time.perf_counter()
            chunk = result.fetchmany(self._fetch)
            self.read_seconds += time.perf_counter() - started
            if not chunk:
                return
            yield from chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def timed_limiter(redis: Any) -> Any:
    from rotator.limiter import Limiter, WindowId

    class TimedLimiter(Limiter):
        restore_seconds = 0.0

        def restore_entries(self, windows: Mapping[WindowId, Sequence[str]], *, epoch: str) -> int:
            started = time.perf_counter()
            try:
                return super().restore_entries(windows, epoch=epoch)
            finally:
                self.restore_seconds = time.perf_counter() - started

    return TimedLimiter(redis, require_epoch=True)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Seconds per call, averaged over as many calls as fit in `seconds`."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        done += 1
    return elapsed / done


def sample_requests(session: Any, settings: Any, n: int) -> list[list[Any]]:
    """The windows of n sends as the dispatcher would reserve them, limits lifted."""
    from sqlalchemy import select, text

    from app.models import Account, Campaign
    from app.services.limits import load_limits

    table = load_limits(session, settings)
    accounts = {a.id: a for a in session.execute(select(Account)).scalars()}
    caps = dict(session.execute(select(Campaign.id, Campaign.daily_cap)).all())
    rows = session.execute(
        text(
            "SELECT account_id, domain, campaign_id FROM recipients "
            "WHERE account_id IS NOT NULL ORDER BY md5(id::text) LIMIT :n"
        ),
        {"n": n},
    ).all()
    return [
        [
            dataclasses.replace(w, limit=BIG)
            for w in table.windows(
                account=accounts[account_id],
                recipient_domain=domain,
                campaign_id=campaign_id,
                campaign_daily_cap=caps.get(campaign_id),
            )
        ]
        for account_id, domain, campaign_id in rows
    ]


def check(session: Any, limiter: Any, settings: Any, t0: datetime, sends: int) -> list[str]:
    """Cheap checks of what the rebuild wrote against what the database says."""
    from sqlalchemy import select, text

    from app.models import Account
    from app.services.limits import account_day_window
    from app.services.sends import SENDS_SINCE, sends_in_last_day
    from rotator.limiter import Scope, Window

    problems = []
    since = {"since": t0 - timedelta(days=1), "now": t0}
    counted = session.execute(
        text(f"SELECT count(*), count(*) FILTER (WHERE at > :minute) FROM ({SENDS_SINCE.text}) s"),
        {**since, "minute": t0 - timedelta(seconds=60)},
    ).one()
    if counted[0] != sends:
        problems.append(f"rebuild counted {sends} sends, SENDS_SINCE has {counted[0]}")
    system = Window(Scope.SYSTEM, "*", 60, BIG)
    [in_minute] = limiter.used([system], now=t0.timestamp())
    if in_minute != counted[1]:
        problems.append(f"system minute window holds {in_minute}, last minute had {counted[1]}")
    # gmail.com ones (1 also has an override), domain-sharing ones, own-domain ones.
    ids = [1, 2, 5, 6, 13, 41, 77, 1200]
    accounts = session.execute(select(Account).where(Account.id.in_(ids))).scalars().all()
    expected = sends_in_last_day(session, [a.id for a in accounts], t0)
    for account in accounts:
        [used] = limiter.used([account_day_window(account, settings)], now=t0.timestamp())
        if used != expected[account.id]:
            problems.append(
                f"account {account.id} ({account.email}): window holds {used}, "
                f"database counts {expected[account.id]}"
            )
    return problems


def child(database_url: str, t0_iso: str, mode: str) -> None:
    """Runs in its own process so that its peak RSS is the rebuild's alone. Modes: `app`
    (the app's rebuild, then instrumented, then the baseline), `profile` (the same plus a
    cProfile run), `prototype`."""
    from sqlalchemy import text

    from app import create_app
    from app.db import unit_of_work
    from app.services.sends import SENDS_SINCE
    from bench.limiter_rebuild_prototype import proto_rebuild
    from rotator.limiter import Limiter
    from worker.jobs import windows_rebuild
    from worker.jobs.windows_rebuild import rebuild_windows

    t0 = datetime.fromisoformat(t0_iso)
    settings = bench_settings(database_url)
    app = create_app(settings)
    out: dict[str, Any] = {}
    with app.app_context():
        redis = app.extensions["redis"]  # the dispatcher's client, timeouts included
        redis.flushdb()
        limiter = Limiter(redis, require_epoch=True)
        out["baseline_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        with unit_of_work() as session:
            if mode == "prototype":
                out["rebuilt"] = proto_rebuild(session, redis, settings, now=t0)
                out["split"] = out["rebuilt"].pop("split")
            else:
                rebuilt = rebuild_windows(session, limiter, settings, now=t0)
                out["rebuilt"] = dataclasses.asdict(rebuilt)
        out["seconds"] = time.perf_counter() - started
        out["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["redis_used_mb"] = redis.info("memory")["used_memory"] / 1e6
        out["redis_keys"] = redis.dbsize()
        with unit_of_work() as session:
            out["problems"] = check(session, limiter, settings, t0, out["rebuilt"]["sends"])
        if mode == "prototype":
            redis.flushdb()
            print(json.dumps(out))
            return

        # The same rebuild, instrumented: read, mapping and write timed apart.
        redis.flushdb()
        timed = timed_limiter(redis)
        started = time.perf_counter()
        with unit_of_work() as session:
            proxy = TimedSession(session, windows_rebuild._FETCH)
            rebuild_windows(cast(Any, proxy), timed, settings, now=t0)
        total = time.perf_counter() - started
        setup = proxy.read_started - started
        out["split"] = {
            "total": total,
            "setup": setup,
            "read": proxy.read_seconds,
            "write": timed.restore_seconds,
            "mapping": total - setup - proxy.read_seconds - timed.restore_seconds,
        }
        with unit_of_work() as session:
            explain = session.execute(
                text("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + SENDS_SINCE.text),
                {"since": t0 - timedelta(days=1), "now": t0},
            ).scalar_one()
        out["server_read"] = explain[0]["Execution Time"] / 1000

        if mode == "profile":
            redis.flushdb()
            profiler = cProfile.Profile()
            with unit_of_work() as session:
                profiler.enable()
                rebuild_windows(session, Limiter(redis, require_epoch=True), settings, now=t0)
                profiler.disable()
            text_out = io.StringIO()
            pstats.Stats(profiler, stream=text_out).sort_stats("tottime").print_stats(25)
            out["profile"] = text_out.getvalue()

        # Baseline: plain reservations in fresh windows of the same Redis.
        with unit_of_work() as session:
            requests = sample_requests(session, settings, 20 * BATCH)
        plain = Limiter(redis, prefix="bench:plain", require_epoch=True)
        plain.restore({}, epoch="bench")  # an empty, built state: the epoch key alone
        batches = [requests[i : i + BATCH] for i in range(0, len(requests), BATCH)]
        picks = iter(range(10**12))
        plain.reserve_many(batches[0])  # load the script, warm the keys
        out["single"] = rate(lambda: plain.reserve(requests[next(picks) % len(requests)]), 2.0)
        out["batch"] = rate(lambda: plain.reserve_many(batches[next(picks) % len(batches)]), 3.0)
        # The same batches against the rebuilt windows (big sorted sets), limits lifted.
        out["batch_rebuilt"] = rate(
            lambda: limiter.reserve_many(batches[next(picks) % len(batches)]), 3.0
        )
        out["windows_per_request"] = sum(map(len, requests)) / len(requests)
        redis.flushdb()
    print(json.dumps(out))


def run_child(database_url: str, t0: datetime, mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", database_url, t0.isoformat(), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"rebuild ({mode}) failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_200)
    parser.add_argument("--profile", action="store_true", help="cProfile a third rebuild")
    parser.add_argument(
        "--prototype", action="store_true", help="also run the suggested rebuild (its own process)"
    )
    args = parser.parse_args()
    if args.accounts < CLIENTS or args.recipients < 100:
        sys.exit(f"need at least {CLIENTS} accounts and 100 recipients")

    name = f"sendfleet_bench_{os.getpid()}"
    database_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        migrate(database_url)
        t0 = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        filled = fill(database_url, args.recipients, args.accounts, t0)
        print(
            f"data: {args.recipients:,} recipients, {args.accounts:,} accounts, "
            f"{filled['events']:,} events, filled in {time.perf_counter() - started:.1f} s"
        )
        ours = run_child(database_url, t0, "profile" if args.profile else "app")
        proto = run_child(database_url, t0, "prototype") if args.prototype else None
        problems = report(args.recipients, ours, proto)
    finally:
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{name}"')
    if problems:
        sys.exit(1)


def split_line(split: dict[str, float], server_read: float | None = None) -> str:
    server = "" if server_read is None else f" (server {server_read:.2f})"
    return (
        f"setup {split['setup']:.2f}, database read {split['read']:.2f}{server}, "
        f"mapping {split['mapping']:.2f}, redis write {split['write']:.2f}"
    )


def report(recipients: int, out: dict[str, Any], proto: dict[str, Any] | None) -> list[str]:
    rebuilt = out["rebuilt"]
    seconds, batch, single = out["seconds"], out["batch"], out["single"]
    peak_mb = out["peak_rss_kb"] / 1024
    print(
        f"reserve() one request          {single * 1e3:10.2f} ms"
        f"   ({out['windows_per_request']:.1f} windows per request)"
    )
    print(f"reserve_many() {BATCH}-request batch {batch * 1e3:7.2f} ms")
    print(
        f"  the same on rebuilt windows  {out['batch_rebuilt'] * 1e3:10.2f} ms"
        f"  ratio {out['batch_rebuilt'] / batch:.2f}"
    )
    print(
        f"rebuild_windows()              {seconds:10.2f} s "
        f"  ratio {seconds / batch:,.0f} batch reservations ({seconds / single:,.0f} single)"
    )
    print(
        f"  instrumented run             {out['split']['total']:10.2f} s "
        f"  {split_line(out['split'], out['server_read'])}"
    )
    per_million = seconds / rebuilt["sends"] * 1e6 if rebuilt["sends"] else 0.0
    print(f"rebuild per million sends      {per_million:10.2f} s")
    print(
        f"rebuilt: {rebuilt['sends']:,} sends, {rebuilt['members']:,} members, "
        f"{rebuilt['windows']:,} windows; Redis {out['redis_keys']:,} keys, "
        f"{out['redis_used_mb']:.0f} MB"
    )
    print(
        f"rebuild RSS: baseline {out['baseline_rss_kb'] / 1024:.0f} MB before, "
        f"peak {peak_mb:.0f} MB"
    )
    if out.get("profile"):
        print(out["profile"])
    problems = [f"app: {p}" for p in out["problems"]]
    if proto is not None:
        p_seconds = proto["seconds"]
        print(
            f"prototype rebuild              {p_seconds:10.2f} s "
            f"  ratio {p_seconds / batch:,.0f} batch reservations; "
            f"{seconds / p_seconds:.1f}x faster than the app's"
        )
        print(f"  split                        {split_line(proto['split'])}")
        print(
            f"  {proto['rebuilt']['members']:,} members, {proto['rebuilt']['windows']:,} windows; "
            f"RSS baseline {proto['baseline_rss_kb'] / 1024:.0f} MB, "
            f"peak {proto['peak_rss_kb'] / 1024:.0f} MB"
        )
        problems += [f"prototype: {p}" for p in proto["problems"]]
        if proto["rebuilt"]["members"] != rebuilt["members"]:
            problems.append("prototype wrote another number of members than the app")
    print("checks: " + ("windows match the database" if not problems else "; ".join(problems)))
    met = seconds < TARGET_SECONDS and peak_mb < TARGET_RSS_MB
    print(
        f"targets (1M recipients < {TARGET_SECONDS:.0f} s, peak RSS < {TARGET_RSS_MB} MB): "
        + ("met" if met else "NOT met")
        + ("" if recipients == 1_000_000 else f" (for {recipients:,} recipients)")
    )
    return problems


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
