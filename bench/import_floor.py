"""The write floor of an import: what storing rows in `recipients` costs, against a bare COPY.

bench/import.py measures the importer; this measures the part no importer can avoid with
today's schema, in the same run and on the same file (bench/import.py's generator):

- baseline: COPY of the file into an UNLOGGED table of five text columns (as import.py);
- floor: `INSERT INTO recipients ... SELECT` of the distinct valid-looking rows of that
  table as they are (no decoding, validation, duplicate or suppression checks), into a
  fresh campaign: heap and WAL, the five indexes, the recipient_counts and parents-check
  statement triggers;
- floor by COPY: the same rows, already in their final form (text made beforehand from that
  table), COPY'd straight into `recipients`: what an importer that wrote the table with
  COPY, no staging and no SQL checks at all, would still pay (COPY batches heap inserts;
  index upkeep, WAL and triggers are the same);
- then the same INSERT once per constraint, index or trigger dropped (each in its own
  rolled-back transaction of the throwaway database), to attribute the cost; and once with
  the two declarative foreign keys the parents check replaced (migration 0016), checking
  every row.

Each INSERT starts from an empty `recipients` (TRUNCATE, committed) right after a
CHECKPOINT, so none pays for the dead rows of the one before or for a checkpoint's full-page
images that another did not; the WAL each writes is printed beside its time.

Wall seconds, and the PostgreSQL backend's CPU seconds when the server runs on this host
(/proc): the machine is shared, CPU time is the steadier figure.

Usage: .venv/bin/python bench/import_floor.py [--rows 1000000]
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
_spec = importlib.util.spec_from_file_location("bench_import", HERE / "import.py")
assert _spec is not None and _spec.loader is not None
bench_import: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_import)

FIELDS = (
    "jsonb_object(ARRAY['first_name', 'last_name', 'company', 'city']::text[], "
    "ARRAY[btrim(s.first_name), btrim(s.last_name), btrim(s.company), btrim(s.city)])"
)
DROPS = {
    "uq_recipients_campaign_email": "ALTER TABLE recipients DROP CONSTRAINT "
    "uq_recipients_campaign_email",
    "ix_recipients_campaign_status": "DROP INDEX ix_recipients_campaign_status",
    "ix_recipients_due": "DROP INDEX ix_recipients_due",
    "recipient_counts trigger": "DROP TRIGGER recipient_counts_insert ON recipients",
    "parents check (migration 0016)": "DROP TRIGGER recipients_parents_insert ON recipients",
}
# What the per-statement parents check replaced (migration 0016): the declarative foreign
# keys, each checking every inserted row with its own trigger event and lookup.
PER_ROW_KEYS = [
    "DROP TRIGGER recipients_parents_insert ON recipients",
    "ALTER TABLE recipients ADD CONSTRAINT fk_recipients_campaign_id_campaigns FOREIGN KEY "
    "(campaign_id) REFERENCES campaigns (id) ON DELETE CASCADE",
    "ALTER TABLE recipients ADD CONSTRAINT fk_recipients_account_id_accounts FOREIGN KEY "
    "(account_id) REFERENCES accounts (id) ON DELETE SET NULL",
]


def backend_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh(conn: Any, cur: Any) -> None:
    """An empty recipients table and a checkpoint just taken, before each measured INSERT."""
    conn.rollback()
    cur.execute("TRUNCATE recipients")
    conn.commit()
    cur.execute("CHECKPOINT")
    conn.commit()


def timed(
    cur: Any, pid: int, sql: str, data: bytes | None = None
) -> tuple[float, float | None, int]:
    """Runs `sql` (a COPY FROM STDIN of `data` when given): its wall and backend CPU seconds
    and the WAL bytes it wrote."""
    cur.execute("SELECT pg_current_wal_lsn()")
    lsn = cur.fetchone()[0]
    cpu0, started = backend_cpu(pid), time.perf_counter()
    if data is None:
        cur.execute(sql)
    else:
        cur.copy_expert(sql, io.BytesIO(data), 1 << 18)
    wall = time.perf_counter() - started
    cpu1 = backend_cpu(pid)
    cur.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn,))
    wal = int(cur.fetchone()[0])
    return wall, None if cpu0 is None or cpu1 is None else cpu1 - cpu0, wal


def ratio(label: str, measured: tuple[float, float | None, int], copy: Any) -> str:
    """`label` and the measured figures as a multiple of the bare COPY's, wall and CPU."""
    cpu = "" if measured[1] is None or not copy[1] else f", {measured[1] / copy[1]:.1f}x CPU"
    return f"{label:33}{measured[0] / copy[0]:6.1f}x wall{cpu}"


def shown(wall: float, cpu: float | None, wal: int | None = None) -> str:
    return (
        f"{wall:6.2f} s wall"
        + ("" if cpu is None else f", {cpu:6.2f} s backend CPU")
        + ("" if wal is None else f", {wal / 1e6:4.0f} MB WAL")
    )


def copy_and_stage(cur: Any, pid: int, path: Path) -> tuple[tuple[float, float, None], int]:
    """The baseline COPY of the file into `bare_copy`, timed (wall, backend CPU, no WAL
    figure), and `staged_in_order`: the rows an import would keep, roughly, in file order;
    returns (the COPY's figures, how many rows were staged). Nothing is committed."""
    cur.execute(
        "CREATE UNLOGGED TABLE bare_copy "
        "(email text, first_name text, last_name text, company text, city text)"
    )
    cpu0, started = backend_cpu(pid), time.perf_counter()
    with path.open("rb") as f:
        cur.copy_expert("COPY bare_copy FROM STDIN (FORMAT csv, HEADER)", f, 1 << 18)
    copy = time.perf_counter() - started, (backend_cpu(pid) or 0) - (cpu0 or 0), None
    # The rows an import would keep, roughly: one per lower-cased address with an @.
    # In file order (a sequential scan of the COPY's table), first occurrences only.
    cur.execute(
        "CREATE UNLOGGED TABLE staged AS SELECT DISTINCT ON (lower(email)) lower(email) AS "
        "email, split_part(lower(email), '@', 2) AS domain, first_name, last_name, company, "
        "city, n FROM (SELECT row_number() OVER () AS n, * FROM bare_copy) b "
        "WHERE email LIKE '%_@_%.%' ORDER BY lower(email), n"
    )
    cur.execute("CREATE UNLOGGED TABLE staged_in_order AS SELECT * FROM staged ORDER BY n")
    cur.execute("ANALYZE staged_in_order")
    cur.execute("SELECT count(*) FROM staged_in_order")
    rows = cur.fetchone()[0]
    return copy, rows


def measure(database_url: str, campaign_id: int, path: Path) -> None:
    conn = psycopg2.connect(database_url)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    copy, rows = copy_and_stage(cur, pid, path)
    conn.commit()
    insert = (
        "INSERT INTO recipients (campaign_id, email, domain, fields, status) "
        f"SELECT {campaign_id}, s.email, s.domain, {FIELDS}, 'pending' FROM staged_in_order s"
    )
    print(f"bare COPY (unlogged, text):      {shown(*copy)}")
    fresh(conn, cur)
    floor = timed(cur, pid, insert)
    print(f"INSERT of {rows:,} rows into recipients: {shown(*floor)}")
    print(ratio("floor ratio INSERT/COPY:", floor, copy))
    final = io.BytesIO()
    cur.copy_expert(
        f"COPY (SELECT {campaign_id}, s.email, s.domain, {FIELDS} FROM staged_in_order s "
        "ORDER BY n) TO STDOUT",
        final,
    )
    fresh(conn, cur)
    by_copy = timed(
        cur,
        pid,
        "COPY recipients (campaign_id, email, domain, fields) FROM STDIN",
        final.getvalue(),
    )
    del final
    print(f"COPY of the same rows, final form: {shown(*by_copy)}")
    print(ratio("floor ratio by COPY:", by_copy, copy))
    variants = {f"without {what}": [drop] for what, drop in DROPS.items()}
    variants["per-row foreign keys instead (before 0016)"] = PER_ROW_KEYS
    for what, ddl in variants.items():
        fresh(conn, cur)
        for statement in ddl:
            cur.execute(statement)
        wall, cpu, wal = timed(cur, pid, insert)
        saved = "" if cpu is None or floor[1] is None else f" ({cpu - floor[1]:+.2f} s CPU)"
        print(f"  {what:44} {shown(wall, cpu, wal)}{saved}")
    conn.rollback()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    name = f"sendfleet_bench_floor_{os.getpid()}"
    database_url = f"{bench_import.PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    with tempfile.TemporaryDirectory(prefix="sendfleet-bench-") as tmp:
        path = Path(tmp) / "contacts.csv"
        bench_import.make_csv(path, args.rows)
        bench_import.admin(f'CREATE DATABASE "{name}"')
        try:
            campaign_id = bench_import.prepare(database_url)
            measure(database_url, campaign_id, path)
        finally:
            bench_import.admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
            bench_import.admin(f'DROP DATABASE IF EXISTS "{name}"')


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
