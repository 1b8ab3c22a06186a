"""ops/backup.sh and ops/restore.sh for real: a pg_dump -Fc of the migrated test database
holding rows made by tests/factories.py, kept in a local folder and uploaded to a local S3
stand-in (moto's server mode on a free port), read back from there and restored into a
fresh database with the same rows; retention in both places; the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
import requests
from flask import Flask

from app.extensions import db
from app.models import Event
from ops.backup_store import backup_name, expired
from tests import factories
from tests.e2e.private_stores import free_port

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
BUCKET = "sendfleet-backups"
S3_ENV = {
    "BACKUP_S3_BUCKET": BUCKET,
    "BACKUP_S3_PREFIX": "nightly/",
    "BACKUP_S3_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "backup-test-key",
    "AWS_SECRET_ACCESS_KEY": "backup-test-secret",
}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server, a local S3 API, in its own process group; stopped by its pid."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(endpoint, timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[Any]:
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=BUCKET)
    yield s3
    for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def restored_url(database_url: str) -> Iterator[str]:
    """A database name nobody has yet, on the same server; dropped afterwards."""
    name = f"{database_url.rsplit('/', 1)[1]}_restored"
    yield f"{database_url.rsplit('/', 1)[0]}/{name}"
    conn = psycopg2.connect(f"{database_url.rsplit('/', 1)[0]}/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(OPS / name), *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _table_counts(url: str) -> dict[str, int]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = sorted(row[0] for row in cur.fetchall())
            counts = {}
            for table in tables:
                cur.execute(f'SELECT count(*) FROM "{table}"')
                counts[table] = cur.fetchone()[0]
            cur.execute("SELECT md5(string_agg(email || status, ',' ORDER BY id)) FROM recipients")
            counts["recipients content"] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


def _collation(url: str) -> str:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def _realistic_rows(app: Flask) -> None:
    with app.app_context():
        other = factories.create_client()
        accounts = [factories.create_account(password="smtp-secret") for _ in range(3)]
        accounts.append(factories.create_account(client_id=other.id, tags=["warm"]))
        campaign = factories.create_campaign()
        factories.create_recipients(campaign, [f"person{n}@example{n % 7}.org" for n in range(240)])
        factories.create_running_campaign(
            [f"lead{n}@corp.example" for n in range(60)], client_id=other.id
        )
        factories.suppress("bounced@example.org", reason="hard_bounce")
        factories.suppress("corp.example", client_id=other.id)
        db.session.add_all(
            Event(type="queued", campaign_id=campaign.id, data={"n": n}) for n in range(50)
        )
        db.session.commit()


def _s3_env(endpoint: str, **more: str) -> dict[str, str]:
    return {**S3_ENV, "BACKUP_S3_ENDPOINT_URL": endpoint, "BACKUP_PYTHON": sys.executable, **more}


def test_backup_to_s3_restores_into_a_fresh_database_with_the_same_rows(
    app: Flask, database_url: str, restored_url: str, bucket: Any, s3_endpoint: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    _realistic_rows(app)
    before = _table_counts(database_url)
    assert before["recipients"] == 300 and before["accounts"] == 4 and before["events"] >= 50
    local = tmp_path / "backups"
    # The database and the local folder from the node's env file, as cron runs it.
    env_file = tmp_path / "node.env"
    env_file.write_text(f"DATABASE_URL={database_url}\nBACKUP_DIR={local}\nOTHER=x y\n")

    backup = _script("backup.sh", "--env-file", str(env_file), env=_s3_env(s3_endpoint))

    assert backup.returncode == 0, backup.stderr
    [dump] = list(local.iterdir())
    assert dump.name.startswith("sendfleet-") and dump.suffix == ".dump"
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    [uploaded] = bucket.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert uploaded["Key"] == f"nightly/{dump.name}" and uploaded["Size"] == dump.stat().st_size
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in backup.stdout + backup.stderr
    dump.unlink()  # the restore has only the bucket's copy to work from

    restore = _script(
        "restore.sh", "--database-url", restored_url, "--from-s3", "latest",
        env=_s3_env(s3_endpoint),
    )  # fmt: skip

    assert restore.returncode == 0, restore.stderr
    assert f"fetched {dump.name}" in restore.stdout and "created database" in restore.stdout
    assert _table_counts(restored_url) == before
    assert _collation(restored_url) == "C"  # whatever the cluster's default

    again = _script(
        "restore.sh", "--database-url", restored_url, "--from-s3", dump.name,
        env=_s3_env(s3_endpoint),
    )  # fmt: skip
    assert again.returncode == 1
    assert "refusing" in again.stderr and "is not empty" in again.stderr
    assert _table_counts(restored_url) == before


def test_restore_with_force_replaces_a_database_that_has_tables(
    app: Flask, database_url: str, restored_url: str, tmp_path: Path
) -> None:
    _realistic_rows(app)
    env = {
        "DATABASE_URL": database_url,
        "BACKUP_DIR": str(tmp_path),
        "BACKUP_PYTHON": sys.executable,
    }
    assert _script("backup.sh", env=env).returncode == 0
    [dump] = list(tmp_path.glob("sendfleet-*.dump"))
    first = _script("restore.sh", "--database-url", restored_url, "--file", str(dump), env=env)
    assert first.returncode == 0, first.stderr
    conn = psycopg2.connect(restored_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DELETE FROM events")
        cur.execute("CREATE TABLE scratch (x int)")
    conn.close()

    forced = _script(
        "restore.sh", "--database-url", restored_url, "--file", str(dump), "--force", env=env
    )

    assert forced.returncode == 0, forced.stderr
    assert "replacing" in forced.stdout
    restored = _table_counts(restored_url)
    assert restored["events"] == _table_counts(database_url)["events"] == 50
    assert restored == {**_table_counts(database_url), "scratch": 0}


def test_an_import_staging_table_is_neither_dumped_nor_locked_by_the_backup(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    staging = f"import_staging_{int(time.time())}_0123456789ab"
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE UNLOGGED TABLE {staging} (row_no integer)")
            cur.execute(f"INSERT INTO {staging} VALUES (1)")
        env = {
            "DATABASE_URL": database_url,
            "BACKUP_DIR": str(tmp_path),
            "BACKUP_PYTHON": sys.executable,
        }
        done = _script("backup.sh", env=env)
        assert done.returncode == 0, done.stderr
        [dump] = list(tmp_path.glob("sendfleet-*.dump"))
        listing = subprocess.run(
            ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
        ).stdout
        assert " TABLE public recipients " in listing
        assert staging not in listing
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {staging}")
        conn.close()


def test_retention_deletes_old_backups_locally_and_in_s3_and_nothing_else(
    app: Flask, database_url: str, bucket: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    old = [backup_name(now - timedelta(days=d, hours=1)) for d in (1, 2, 3, 10, 30)]
    local = tmp_path / "backups"
    local.mkdir()
    for name in [*old, "notes.txt"]:
        (local / name).write_bytes(b"an older dump")
        bucket.put_object(Bucket=BUCKET, Key=f"nightly/{name}", Body=b"an older dump")
    bucket.put_object(Bucket=BUCKET, Key=f"elsewhere/{old[-1]}", Body=b"not ours")
    env = _s3_env(
        s3_endpoint, DATABASE_URL=database_url, BACKUP_DIR=str(local),
        BACKUP_KEEP_DAYS="7", BACKUP_KEEP_FILES="3",
    )  # fmt: skip

    done = _script("backup.sh", env=env)

    assert done.returncode == 0, done.stderr
    [new] = [p.name for p in local.iterdir() if p.name not in old and p.name != "notes.txt"]
    # 10 and 30 days: past BACKUP_KEEP_DAYS; 3 days: past the newest BACKUP_KEEP_FILES.
    kept = {new, old[0], old[1], "notes.txt"}
    assert {p.name for p in local.iterdir()} == kept
    keys = {item["Key"] for item in bucket.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {f"nightly/{name}" for name in kept} | {f"elsewhere/{old[-1]}"}
    assert "deleted 3" in done.stdout


def test_retention_keeps_the_newest_backup_however_old() -> None:
    now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    names = [backup_name(now - timedelta(days=d)) for d in (40, 50, 60)] + ["other.dump"]

    assert expired(names, now, keep_days=14, keep_files=0) == names[1:3]
    assert expired(names, now, keep_days=0, keep_files=0) == []
    assert expired(names, now, keep_days=0, keep_files=2) == [names[2]]


def test_a_failed_dump_leaves_no_file_and_fails(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
        "BACKUP_DIR": str(tmp_path),
        "BACKUP_PYTHON": sys.executable,
    }

    done = _script("backup.sh", env=env)

    assert done.returncode != 0
    assert list(tmp_path.iterdir()) == []


def test_restore_refuses_a_file_that_is_not_a_backup(restored_url: str, tmp_path: Path) -> None:
    junk = tmp_path / "sendfleet-20261201T000000Z.dump"
    junk.write_text("not a dump")

    done = _script("restore.sh", "--database-url", restored_url, "--file", str(junk), env={})

    assert done.returncode == 1 and "not a pg_dump -Fc archive" in done.stderr
