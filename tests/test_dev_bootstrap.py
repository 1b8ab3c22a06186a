"""`make run` where its database already exists: ops/dev/bootstrap.sh (the set-up half of
run.sh) run again and again against one throwaway database, as a first clone, a second
clone and `make clean && make run` do. Each run must print a login and an API key that work
and keep the data."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from werkzeug.security import check_password_hash

from app import create_app
from app.settings import Settings
from tests import redis_urls
from tests.conftest import PG_ADMIN_DSN, _admin_exec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def database_url() -> Iterator[str]:
    name = f"sendfleet_boot_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    yield f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"
    _admin_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}"')


class Clone:
    """One working tree's .env and var/, sharing the machine's database and keys folder."""

    def __init__(self, root: Path, keys: Path, database_url: str) -> None:
        self.root, self.keys, self.database_url = root, keys, database_url
        root.mkdir(parents=True, exist_ok=True)

    def bootstrap(self) -> tuple[str, dict[str, str]]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "SENDFLEET_ENV_FILE": str(self.root / ".env"),
            "SENDFLEET_VAR_DIR": str(self.root / "var"),
            "SENDFLEET_DEV_KEYS_DIR": str(self.keys),
            "SENDFLEET_DEV_DATABASE_URL": self.database_url,
            "SENDFLEET_DEV_REDIS_URL": redis_urls.APP_URL,
        }
        result = subprocess.run(
            ["bash", "ops/dev/bootstrap.sh"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        login = dict(line.split(": ", 1) for line in result.stdout.splitlines()[-5:-2])
        assert (self.root / "var" / "first-login.txt").read_text().splitlines() == [
            f"{k}: {v}" for k, v in login.items()
        ]
        return result.stdout, login

    def env(self) -> dict[str, str]:
        lines = (self.root / ".env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")

    def app(self) -> Any:
        env = self.env()
        return create_app(
            Settings(
                sendfleet_env="test",
                database_url=env["DATABASE_URL"],
                redis_url=redis_urls.APP_URL,
                secret_key=env["SECRET_KEY"],  # type: ignore[arg-type]
                credentials_key=env["CREDENTIALS_KEY"],  # type: ignore[arg-type]
                company_address="1 Test Street",
            )
        )


def _password_works(database_url: str, email: str, password: str) -> bool:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT password_hash FROM users WHERE email = %s", (email,))
            (password_hash,) = cur.fetchone()
    finally:
        conn.close()
    return check_password_hash(password_hash, password)


def _get(clone: Clone, key: str, path: str) -> Any:
    app = clone.app()
    try:
        response = app.test_client().get(path, headers={"Authorization": f"Bearer {key}"})
        return response.status_code, response.get_json()
    finally:
        with app.app_context():
            from app.extensions import db

            db.engine.dispose()


def test_make_run_comes_up_on_a_database_that_exists(tmp_path, database_url):
    keys = tmp_path / "keys"
    first = Clone(tmp_path / "first", keys, database_url)
    out, login = first.bootstrap()
    assert "created database" in out and "created the user admin@example.com" in out
    assert _password_works(database_url, login["login"], login["password"])
    app = first.app()
    with app.app_context():
        created = app.test_client().post(
            "/api/v1/accounts",
            json={"name": "g", "provider": "gmail", "email": "g@x.example", "password": "pw"},
            headers={"Authorization": f"Bearer {login['api key']}"},
        )
        from app.extensions import db

        db.engine.dispose()
    assert created.status_code == 201, created.get_json()

    # A second clone on the same machine: a new .env, the same database.
    second = Clone(tmp_path / "second", keys, database_url)
    out, again = second.bootstrap()
    assert "the keys this database was made with" in out
    assert "database" in out and "its data is kept" in out
    assert "reset the password of the first one, admin@example.com" in out
    assert "WARNING" not in out
    assert second.env()["CREDENTIALS_KEY"] == first.env()["CREDENTIALS_KEY"]
    assert again["login"] == "admin@example.com" and again["password"] != login["password"]
    assert _password_works(database_url, again["login"], again["password"])
    assert not _password_works(database_url, again["login"], login["password"])
    status, body = _get(second, again["api key"], "/api/v1/accounts")
    assert status == 200 and [a["email"] for a in body["items"]] == ["g@x.example"]

    # `make run` again: the kept login still works and is shown as it is.
    out, kept = second.bootstrap()
    assert kept == again and "still works" in out

    # `make clean && make run`: var/ is gone, .env stays.
    shutil.rmtree(second.root / "var")
    out, cleaned = second.bootstrap()
    assert "reset the password" in out and cleaned["password"] != again["password"]
    assert _password_works(database_url, cleaned["login"], cleaned["password"])
    assert _get(second, cleaned["api key"], "/api/v1/accounts")[0] == 200


def test_a_clone_without_the_databases_keys_warns_about_secrets(tmp_path, database_url):
    first = Clone(tmp_path / "first", tmp_path / "keys", database_url)
    _, login = first.bootstrap()
    app = first.app()
    with app.app_context():
        response = app.test_client().post(
            "/api/v1/accounts",
            json={"name": "g", "provider": "gmail", "email": "g@x.example", "password": "pw"},
            headers={"Authorization": f"Bearer {login['api key']}"},
        )
        from app.extensions import db

        db.engine.dispose()
    account_id = response.get_json()["id"]

    # Another user's clone (no saved keys): a fresh CREDENTIALS_KEY.
    stranger = Clone(tmp_path / "stranger", tmp_path / "other-keys", database_url)
    out, login = stranger.bootstrap()
    assert stranger.env()["CREDENTIALS_KEY"] != first.env()["CREDENTIALS_KEY"]
    assert (
        f"WARNING: 1 account secret(s) in this database cannot be decrypted with "
        f"CREDENTIALS_KEY (accounts {account_id})" in out
    )
    assert _password_works(database_url, login["login"], login["password"])
    assert _get(stranger, login["api key"], "/api/v1/accounts")[0] == 200
