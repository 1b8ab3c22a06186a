"""What partitioning `recipients` by campaign would buy an import, and what it would cost the
send path: the figures behind issue 15's section 5 decision, measured in one run.

import_floor.py shows that storing a million rows in today's `recipients` costs ~15 s of
per-row work (heap and WAL, four index insertions, two foreign-key checks), far above the
issue's 10 s. The one way round per-row maintenance is to load a fresh table and build its
indexes by sort: `recipients` partitioned by LIST (campaign_id), an import into an empty
campaign filling a new table that is attached as its partition. This bench measures both
sides of that trade on a throwaway database migrated to today's schema:

1. the import side, on bench/import.py's file: the bare COPY (baseline); the per-row INSERT
   into today's `recipients` (the floor); and the partition route step by step into a
   partitioned copy of the table (same columns, keys, partial indexes and foreign keys,
   primary key (id, campaign_id) as partitioning requires): the fresh table filled by
   INSERT ... SELECT and, alternatively, by COPY of finished rows (what an importer
   streaming straight into it would do), its indexes built, then ATTACH PARTITION
   (partition bound proven by a CHECK constraint, foreign keys validated by one join each);
2. the send side: the send path's statements (a CAS update of a claimed group by id, one
   row's lookup by id) on a partitioned table of P campaigns, by id alone (as every
   statement of the send path, recovery and bounce matching is written today) and with
   the campaign's key added, against the same statements on a plain table.

Wall seconds, and PostgreSQL backend CPU where the server runs on this host (/proc).

Usage: .venv/bin/python bench/import_partition_route.py [--rows 1000000] [--partitions 10,100,400]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import drop_database  # noqa: E402


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_import: Any = _load("bench_import", "import.py")
floor: Any = _load("bench_import_floor", "import_floor.py")

PARTITIONED = [
    "CREATE TABLE recipients_p (LIKE recipients INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
    "PARTITION BY LIST (campaign_id)",
    "ALTER TABLE recipients_p ADD PRIMARY KEY (id, campaign_id)",
    "ALTER TABLE recipients_p ADD UNIQUE (campaign_id, email)",
    "ALTER TABLE recipients_p ADD FOREIGN KEY (campaign_id) REFERENCES campaigns (id) "
    "ON DELETE CASCADE",
    "ALTER TABLE recipients_p ADD FOREIGN KEY (account_id) REFERENCES accounts (id) "
    "ON DELETE SET NULL",
    "CREATE INDEX ON recipients_p (campaign_id, status) WHERE status <> 'pending'",
    "CREATE INDEX ON recipients_p (campaign_id, next_attempt_at NULLS FIRST, id) "
    "WHERE status IN ('pending', 'deferred')",
    "CREATE INDEX ON recipients_p (status, updated_at) WHERE status IN ('queued', 'sending')",
    "CREATE INDEX ON recipients_p (message_id) WHERE message_id IS NOT NULL",
]
# The fresh table's indexes, built by sort once it is full (the partial ones on statuses
# an import never writes are empty and cost nothing; ATTACH creates them).
BUILD = {
    "primary key (id, campaign_id)": "ALTER TABLE fresh ADD PRIMARY KEY (id, campaign_id)",
    "unique (campaign_id, email)": "ALTER TABLE fresh ADD UNIQUE (campaign_id, email)",
    "due index": "CREATE INDEX ON fresh (campaign_id, next_attempt_at NULLS FIRST, id) "
    "WHERE status IN ('pending', 'deferred')",
}
COLUMNS = "campaign_id, email, domain, fields, status"
GROUP = 10  # rows per claimed group in the send-path statements


def step(cur: Any, pid: int, sql: str, data: Any = None) -> tuple[float, float | None]:
    cpu0, started = floor.backend_cpu(pid), time.perf_counter()
    if data is None:
        cur.execute(sql)
    else:
        cur.copy_expert(sql, data, 1 << 18)
    cpu1 = floor.backend_cpu(pid)
    return time.perf_counter() - started, None if cpu0 is None or cpu1 is None else cpu1 - cpu0


def import_side(conn: Any, campaign_id: int, path: Path) -> None:
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    copy, rows = floor.copy_and_stage(cur, pid, path)
    for statement in PARTITIONED:
        cur.execute(statement)
    conn.commit()
    select = (
        f"SELECT {campaign_id}, s.email, s.domain, {floor.FIELDS}, 'pending' FROM staged_in_order s"
    )
    finished = io.StringIO()
    cur.copy_expert(f"COPY ({select}) TO STDOUT", finished)
    print(f"bare COPY (unlogged, text):            {floor.shown(*copy)}")

    floor.fresh(conn, cur)
    per_row = step(cur, pid, f"INSERT INTO recipients ({COLUMNS}) {select}")
    conn.rollback()
    print(f"per-row INSERT of {rows:,} rows into recipients: {floor.shown(*per_row)}")

    for fill_name, fill_sql, data in (
        ("INSERT ... SELECT", f"INSERT INTO fresh ({COLUMNS}) {select}", None),
        ("COPY of finished rows", f"COPY fresh ({COLUMNS}) FROM STDIN", finished),
    ):
        cur.execute("CHECKPOINT")
        conn.commit()
        total_wall, total_cpu = 0.0, 0.0
        print(f"partition route, filled by {fill_name}:")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cur.execute(
            "CREATE TABLE fresh (LIKE recipients_p INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        if data is not None:
            data.seek(0)
        steps = {"fill": (fill_sql, data)}
        steps["bound as CHECK"] = (
            f"ALTER TABLE fresh ADD CONSTRAINT fresh_bound CHECK (campaign_id = {campaign_id})",
            None,
        )
        steps.update({name: (sql, None) for name, sql in BUILD.items()})
        steps["ATTACH (foreign keys validated)"] = (
            f"ALTER TABLE recipients_p ATTACH PARTITION fresh FOR VALUES IN ({campaign_id})",
            None,
        )
        for name, (sql, source) in steps.items():
            wall, cpu = step(cur, pid, sql, source)
            total_wall += wall
            total_cpu += cpu or 0.0
            print(f"  {name:36} {floor.shown(wall, cpu)}")
        cur.execute("SELECT count(*) FROM recipients_p")
        assert cur.fetchone()[0] == rows
        conn.rollback()
        print(
            f"  {'total':36} {floor.shown(total_wall, total_cpu)}  "
            f"({per_row[0] / total_wall:.1f}x faster than per-row; "
            f"{total_wall / copy[0]:.1f}x COPY)"
        )


def per_statement(cur: Any, sql: str, args: tuple[Any, ...], repeat: int = 200) -> float:
    for _ in range(10):
        cur.execute(sql, args)
    started = time.perf_counter()
    for _ in range(repeat):
        cur.execute(sql, args)
    return (time.perf_counter() - started) / repeat * 1000


def send_side(conn: Any, counts: list[int]) -> None:
    cur = conn.cursor()
    cur.execute("SELECT min(id) FROM clients")
    client_id = cur.fetchone()[0]
    cur.execute("CREATE TABLE plain (LIKE recipients INCLUDING ALL)")
    conn.commit()
    print(f"send-path statements, ms each (a group of {GROUP} rows; plain table = today):")
    made = 0
    for partitions in counts:
        for _ in range(made, partitions):
            cur.execute(
                "INSERT INTO campaigns (client_id, name, subject, body_text) "
                "VALUES (%s, 'p', 's', 'b') RETURNING id",
                (client_id,),
            )
            cid = cur.fetchone()[0]
            cur.execute(
                f"CREATE TABLE recipients_p_{cid} PARTITION OF recipients_p FOR VALUES IN ({cid})"
            )
            for table in ("recipients_p", "plain"):
                cur.execute(
                    f"INSERT INTO {table} ({COLUMNS}) SELECT %s, 'u' || g || '@x.com', 'x.com', "
                    "'{}', 'sending' FROM generate_series(1, 200) g",
                    (cid,),
                )
        made = partitions
        cur.execute("ANALYZE recipients_p")
        cur.execute("ANALYZE plain")
        conn.commit()
        cur.execute(
            "SELECT campaign_id, array_agg(id) "
            f"FROM (SELECT * FROM plain LIMIT {GROUP}) r GROUP BY 1"
        )
        cid, ids = cur.fetchone()
        cas = (
            "UPDATE {t} SET attempts = attempts + 1 WHERE {key}id = ANY(%s) AND status = 'sending'"
        )
        one = "SELECT account_id FROM {t} WHERE {key}id = %s AND status = 'sending'"
        figures = []
        for label, sql in (("CAS update", cas), ("lookup", one)):
            arg = ids if sql is cas else ids[0]
            plain = per_statement(cur, sql.format(t="plain", key=""), (arg,))
            cur.execute(
                "SELECT array_agg(id) FROM (SELECT id FROM recipients_p "
                f"WHERE campaign_id = {cid} LIMIT {GROUP}) r"
            )
            pids = cur.fetchone()[0]
            parg = pids if sql is cas else pids[0]
            by_id = per_statement(cur, sql.format(t="recipients_p", key=""), (parg,), repeat=20)
            keyed_sql = sql.format(t="recipients_p", key=f"campaign_id = {cid} AND ")
            keyed = per_statement(cur, keyed_sql, (parg,))
            figures.append(
                f"{label}: plain {plain:.3f}, by id {by_id:.2f} ({by_id / plain:.0f}x), "
                f"with campaign {keyed:.3f} ({keyed / plain:.1f}x)"
            )
            conn.rollback()
        print(f"  {partitions:4} campaigns  " + "; ".join(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", default="10,100,400")
    args = parser.parse_args()
    name = f"sendfleet_bench_partition_{os.getpid()}"
    database_url = f"{bench_import.PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    with tempfile.TemporaryDirectory(prefix="sendfleet-bench-") as tmp:
        path = Path(tmp) / "contacts.csv"
        bench_import.make_csv(path, args.rows)
        bench_import.admin(f'CREATE DATABASE "{name}"')
        try:
            campaign_id = bench_import.prepare(database_url)
            conn = psycopg2.connect(database_url)
            import_side(conn, campaign_id, path)
            send_side(conn, [int(n) for n in args.partitions.split(",")])
            conn.close()
        finally:
            drop_database(name)


if __name__ == "__main__":
    main()
