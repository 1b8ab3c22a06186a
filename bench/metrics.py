"""One /metrics scrape at realistic size, against a naive full count in the same run.

- ours: GET /metrics through the app's test client (the real route, registry and
  collector), per part (sendfleet_metrics_part_duration_seconds) and in total: the first
  scrape (the event totals start at today's first event), then steady scrapes with a
  scrape interval's worth of new events (300) written before each one;
- baseline: the query a straightforward collector would run for the same counter, a
  GROUP BY over the whole events table, and `SELECT 1` (one round trip).

Data: bench/limiter_rebuild.py's fill (1,000,000 recipients over 100 campaigns, 1,200
accounts, about 2 M events over the last 24 h), its limiter windows rebuilt into Redis.

Usage: .venv/bin/python bench/metrics.py [--recipients 1000000] [--accounts 1200]
    [--scrapes 5]
Needs PostgreSQL on 127.0.0.1 (user postgres, trust) and Redis at SENDFLEET_BENCH_REDIS
(default redis://127.0.0.1:6379/10; that DB is flushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.limiter_rebuild import PG_ADMIN, admin, bench_settings, fill, migrate  # noqa: E402

NAIVE = """
    SELECT account_id, type,
           CASE WHEN data->>'smtp_code' ~ '^[0-9]{3}$'
                THEN left(data->>'smtp_code', 1) || 'xx' ELSE 'none' END AS reply_class,
           count(*)
    FROM events
    WHERE type IN ('sent', 'deferred', 'bounced', 'failed', 'unknown', 'requeued')
    GROUP BY 1, 2, 3
"""
NEW_EVENTS = """
    INSERT INTO events (type, campaign_id, recipient_id, account_id, data)
    SELECT 'sent', 1 + g % 100, g, 1 + g % 1200, '{"smtp_code": 250}'::jsonb
    FROM generate_series(1, 300) g
"""


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def run(database_url: str, t0: datetime, scrapes: int) -> dict[str, Any]:
    from sqlalchemy import text

    from app import create_app
    from app.db import unit_of_work
    from app.extensions import db
    from rotator.limiter import Limiter
    from tests.metrics_scrape import family, parse
    from worker.jobs.windows_rebuild import rebuild_windows

    settings = bench_settings(database_url)
    app = create_app(settings)
    client = app.test_client()
    out: dict[str, Any] = {}
    with app.app_context():
        redis = app.extensions["redis"]
        redis.flushdb()
        with unit_of_work() as session:
            rebuild_windows(session, Limiter(redis, require_epoch=True), settings, now=t0)

        def scrape() -> str:
            response = client.get("/metrics")
            assert response.status_code == 200
            return response.get_data(as_text=True)

        out["first"], body = timed(scrape)
        first = parse(body)
        out["first_parts"] = _parts(family(first, "sendfleet_metrics_part_duration_seconds"))
        totals, parts = [], []
        for _ in range(scrapes):
            with db.engine.begin() as conn:
                conn.execute(text(NEW_EVENTS))
            seconds, body = timed(scrape)
            samples = parse(body)
            totals.append(seconds)
            parts.append(_parts(family(samples, "sendfleet_metrics_part_duration_seconds")))
            up = family(samples, "sendfleet_metrics_part_up")
            assert all(v == 1 for v in up.values()), up
        out["steady"] = statistics.median(totals)
        out["outcomes_each"] = [p["outcomes"] for p in parts]
        out["bytes"] = len(body)
        out["steady_parts"] = {part: statistics.median(p[part] for p in parts) for part in parts[0]}
        out["series"] = len(samples)
        with db.engine.connect() as conn:
            out["naive"], _ = timed(lambda: conn.execute(text(NAIVE)).all())
            out["round_trip"], _ = timed(lambda: conn.execute(text("SELECT 1")).all())
            out["events"] = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        db.engine.dispose()
    return out


def _parts(durations: dict[Any, float]) -> dict[str, float]:
    return {dict(labels)["part"]: value for labels, value in durations.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1_200)
    parser.add_argument("--scrapes", type=int, default=5)
    args = parser.parse_args()

    name = f"sendfleet_bench_metrics_{os.getpid()}"
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
        out = run(database_url, t0, args.scrapes)
    finally:
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        admin(f'DROP DATABASE IF EXISTS "{name}"')
    print(
        f"series in one scrape: {out['series']:,} ({out['bytes'] / 1e6:.1f} MB); "
        f"events: {out['events']:,}"
    )
    print(
        "outcomes part, each steady scrape (ms):", [round(x * 1000) for x in out["outcomes_each"]]
    )
    print(f"first scrape (totals start): {out['first'] * 1000:.0f} ms  {_line(out['first_parts'])}")
    print(
        f"steady scrape (median of {args.scrapes}, 300 new events each): "
        f"{out['steady'] * 1000:.0f} ms  {_line(out['steady_parts'])}"
    )
    print(
        f"baseline: naive GROUP BY over all events {out['naive'] * 1000:.0f} ms "
        f"(that counter alone); SELECT 1 {out['round_trip'] * 1000:.1f} ms"
    )
    print(
        f"ratio: outcomes part / naive count = {out['steady_parts']['outcomes'] / out['naive']:.3f}"
    )


def _line(parts: dict[str, float]) -> str:
    return ", ".join(f"{part} {seconds * 1000:.0f}" for part, seconds in sorted(parts.items()))


if __name__ == "__main__":
    main()
