"""What every benchmark shares: the PostgreSQL admin connection its throwaway databases are
made through, and a free local port."""

from __future__ import annotations

import os
import socket

import psycopg2

PG_ADMIN = os.environ.get("SENDFLEET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin(sql: str) -> None:
    """One statement on the admin connection, outside a transaction (CREATE/DROP DATABASE)."""
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def drop_database(name: str) -> None:
    admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    admin(f'DROP DATABASE IF EXISTS "{name}"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
