"""The CLI as operators run it: `flask --app app ...` in a real subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select
from werkzeug.security import check_password_hash

from app.models import ApiKey, User

ROOT = Path(__file__).resolve().parents[1]


def flask_cli(settings_env: dict[str, str], *args: str, input: str | None = None):
    env = {**os.environ, **settings_env}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_prints_the_key_alone_on_its_last_line(app, settings_env, session):
    result = flask_cli(settings_env, "keys", "create", "crm")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("sf_") and " " not in key and len(key) > 30
    row = session.execute(select(ApiKey)).scalar_one()
    assert row.name == "crm"
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()


def test_a_created_key_authenticates(app, settings_env, client):
    key = flask_cli(settings_env, "keys", "create", "ops").stdout.strip().splitlines()[-1]
    response = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_keys_list_shows_names_never_keys(app, runner):
    created = runner.invoke(args=["keys", "create", "one"])
    key = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(args=["keys", "list"])
    assert listed.exit_code == 0
    assert "one" in listed.output
    assert key not in listed.output


def test_revoking_an_unknown_key_fails_clearly(app, runner):
    result = runner.invoke(args=["keys", "revoke", "999"])
    assert result.exit_code != 0
    assert "no active API key with id 999" in result.output


def test_users_create_stores_a_hashed_password(app, settings_env, session):
    result = flask_cli(
        settings_env, "users", "create", "Ops@Example.com", "--password", "correct horse battery"
    )
    assert result.returncode == 0, result.stderr
    user = session.execute(select(User)).scalar_one()
    assert user.email == "ops@example.com"
    assert "correct horse" not in user.password_hash
    from werkzeug.security import check_password_hash

    assert check_password_hash(user.password_hash, "correct horse battery")


def test_users_create_prompts_for_the_password(app, runner, session):
    result = runner.invoke(args=["users", "create", "a@example.com"], input="long enough pw\n" * 2)
    assert result.exit_code == 0, result.output
    assert session.execute(select(User.email)).scalar_one() == "a@example.com"


def test_users_create_rejects_a_short_password_and_a_bad_email(app, runner, session):
    assert runner.invoke(args=["users", "create", "a@example.com", "--password", "x"]).exit_code
    assert runner.invoke(args=["users", "create", "not-an-email", "--password", "x" * 12]).exit_code
    assert session.execute(select(User)).first() is None


def test_users_create_refuses_a_duplicate(app, runner):
    args = ["users", "create", "a@example.com", "--password", "long enough pw"]
    assert runner.invoke(args=args).exit_code == 0
    again = runner.invoke(args=args)
    assert again.exit_code != 0
    assert "already exists" in again.output


def test_users_set_password_replaces_the_hash(app, runner, session):
    runner.invoke(args=["users", "create", "a@example.com", "--password", "long enough pw"])
    result = runner.invoke(
        args=["users", "set-password", "A@example.com", "--password", "another long pw"]
    )
    assert result.exit_code == 0, result.output
    session.expire_all()
    user = session.execute(select(User)).scalar_one()
    assert check_password_hash(user.password_hash, "another long pw")
    assert not check_password_hash(user.password_hash, "long enough pw")
    missing = runner.invoke(
        args=["users", "set-password", "b@example.com", "--password", "another long pw"]
    )
    assert missing.exit_code != 0 and "no user b@example.com" in missing.output
    short = runner.invoke(args=["users", "set-password", "a@example.com", "--password", "x"])
    assert short.exit_code != 0


def test_dev_first_login_creates_then_resets_and_keeps_a_working_login(
    app, runner, session, tmp_path
):
    path = tmp_path / "var" / "first-login.txt"
    first = runner.invoke(args=["dev", "first-login", "--file", str(path)])
    assert first.exit_code == 0, first.output
    assert "created the user admin@example.com" in first.output
    login = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    kept = runner.invoke(args=["dev", "first-login", "--file", str(path)])
    assert "still works" in kept.output and login["password"] in kept.output
    path.unlink()
    reset = runner.invoke(args=["dev", "first-login", "--file", str(path)])
    assert "reset the password of the first one, admin@example.com" in reset.output
    again = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    session.expire_all()
    user = session.execute(select(User)).scalar_one()
    assert check_password_hash(user.password_hash, again["password"])
    assert not check_password_hash(user.password_hash, login["password"])
    hashes = set(session.execute(select(ApiKey.key_hash)).scalars())
    assert {
        hashlib.sha256(k.encode()).hexdigest() for k in (login["api key"], again["api key"])
    } == hashes
    # The operator's keys: admin keys (system limits, clients).
    assert set(session.execute(select(ApiKey.is_admin)).scalars()) == {True}


def test_db_upgrade_is_a_no_op_on_a_migrated_database(app, settings_env):
    result = flask_cli(settings_env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "Running upgrade" not in result.stderr


def test_missing_required_setting_names_the_variable(settings_env):
    env = {k: v for k, v in settings_env.items() if k != "CREDENTIALS_KEY"}
    clean = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "keys", "list"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CREDENTIALS_KEY: is required" in result.stderr


def test_malformed_setting_names_the_variable(settings_env):
    env = {**os.environ, **settings_env, "LIMIT_SYSTEM_PER_MINUTE": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "keys", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LIMIT_SYSTEM_PER_MINUTE" in result.stderr
