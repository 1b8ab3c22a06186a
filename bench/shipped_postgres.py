"""Runs a benchmark against a PostgreSQL configured as the deployment ships it.

An import's time is mostly the server's (WAL, checkpoints, buffers), so bench/import.py and
bench/import_floor.py are also run on a throwaway cluster made with initdb and started
with ops/postgres/primary.conf, the file node 1's container mounts, with durability as
configured (fsync, synchronous commit, full-page writes on); only its port, listen address
and authentication (trust on 127.0.0.1, as the machine's server) are its own. The
benchmark's bare-COPY baseline runs on the same server, so its ratio stays a same-run
comparison.

The cluster is made with the deployment's initdb options (POSTGRES_INITDB_ARGS in
docker-compose.yml: collation "C"); `--image-locale` makes it as the postgres image does
without them (en_US.utf8, which this host must have: `localedef -i en_US -f UTF-8
en_US.UTF-8`), to show what that costs.

Usage: .venv/bin/python bench/shipped_postgres.py [--image-locale] bench/import.py [its
arguments] (the benchmark sees SENDFLEET_BENCH_PG pointing at the cluster's admin database).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.private_stores import (  # noqa: E402
    OPS_POSTGRES,
    PrivatePostgres,
    deployment_initdb_args,
)

SHOWN = ("shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "fsync")
IMAGE_LOCALE = "en_US.utf8"


def _shown(value: str, unit: str | None) -> str:
    """pg_settings' value in its unit ('16384', '8kB' -> '128 MB')."""
    scale = {"8kB": 8 << 10, "kB": 1 << 10, "MB": 1 << 20}.get(unit or "")
    if scale is None:
        return f"{value}{unit or ''}"
    return f"{int(value) * scale >> 20} MB"


def _has_locale(name: str) -> bool:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    return name.lower() in {line.strip().lower() for line in listed.stdout.splitlines()}


def main() -> None:
    args = sys.argv[1:]
    locale_args = deployment_initdb_args()
    if args[:1] == ["--image-locale"]:
        args = args[1:]
        locale_args = [f"--locale={IMAGE_LOCALE}"]
        if not _has_locale(IMAGE_LOCALE):
            sys.exit(
                f"--image-locale needs the {IMAGE_LOCALE} locale on this host, which it lacks: "
                "localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8"
            )
    if not args:
        sys.exit(__doc__)
    cluster = PrivatePostgres(durable=True, locale_args=locale_args)
    trust = cluster.root / "trust_hba.conf"
    trust.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    trust.chmod(0o644)
    cluster.server_options = (
        f"-c config_file={cluster.owned_copy(OPS_POSTGRES / 'primary.conf')} -c hba_file={trust}"
    )
    cluster.init()
    try:
        conn = psycopg2.connect(cluster.dsn())
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", [list(SHOWN)]
            )
            settings = {name: _shown(value, unit) for name, value, unit in cur.fetchall()}
            cur.execute("SELECT datcollate, datctype FROM pg_database WHERE datname = 'postgres'")
            collate, ctype = cur.fetchone()
        conn.close()
        print(
            "server: ops/postgres/primary.conf ("
            + ", ".join(f"{name} {settings[name]}" for name in SHOWN)
            + f"), initdb {' '.join(locale_args)} (collation {collate}, ctype {ctype})",
            flush=True,
        )
        env = {**os.environ, "SENDFLEET_BENCH_PG": cluster.dsn()}
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=False)
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
