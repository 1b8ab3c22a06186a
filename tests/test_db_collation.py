"""The migrate step tells the operator when the database does not sort bytewise: under any
collation but C (or POSIX) each comparison in a text index is a strcoll(), which the
shipped Compose files avoid for new clusters (POSTGRES_INITDB_ARGS) but an older cluster
keeps (app.db.collation_advice)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from app.db import collation_advice
from tests.conftest import PG_ADMIN_DSN, _admin_exec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def database() -> Iterator[object]:
    made: list[str] = []

    def make(collation: str) -> str:
        name = f"sendfleet_collation_{uuid.uuid4().hex[:8]}"
        _admin_exec(f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE '{collation}'")
        made.append(name)
        return f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"

    yield make
    for name in made:
        _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.mark.parametrize(
    ("collation", "advised"), [("C", False), ("POSIX", False), ("C.UTF-8", True)]
)
def test_only_a_collation_that_is_not_bytewise_is_advised_on(
    database, collation: str, advised: bool
) -> None:  # type: ignore[no-untyped-def]
    engine = create_engine(database(collation))
    try:
        with engine.connect() as connection:
            advice = collation_advice(connection)
    finally:
        engine.dispose()
    if advised:
        assert advice is not None
        assert f"collation is {collation}, not C" in advice
        assert "POSTGRES_INITDB_ARGS" in advice
    else:
        assert advice is None


@pytest.mark.parametrize(("collation", "advised"), [("C", False), ("C.UTF-8", True)])
def test_migrate_warns_once_it_has_migrated_a_database_that_does_not_sort_bytewise(
    database, settings_env: dict[str, str], collation: str, advised: bool
) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, **settings_env, "DATABASE_URL": database(collation), "LOG_LEVEL": "INFO"}
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "Running upgrade" in said  # the log is shown: silence below would prove nothing
    assert (f"the database's collation is {collation}, not C" in said) is advised
