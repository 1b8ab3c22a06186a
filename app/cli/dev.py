"""`flask --app app dev first-login`: the login and API key `make run` prints, on a fresh
database or on one that already holds users (a second clone, `make clean && make run`).

A kept login file whose password and key still work is shown again as it is. Otherwise the
first user (created when there is none) gets a new random password, which is said, and a
fresh API key is created; the data stays. Account secrets the current CREDENTIALS_KEY
cannot decrypt (a database made with another .env) are reported, never touched."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.api.auth import create_key, hash_key
from app.crypto import SecretBox
from app.db import unit_of_work
from app.models import Account, ApiKey, User, UserRole
from app.services.clients import add_member

DEFAULT_EMAIL = "admin@example.com"
KEY_NAME = "make run"


@dataclass
class FirstLogin:
    email: str
    password: str
    key: str
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return f"login: {self.email}\npassword: {self.password}\napi key: {self.key}\n"


@click.group(cls=AppGroup, help="Local development helpers (make run).")
def dev() -> None:
    pass


@dev.command("first-login", help="Print (and write to FILE) a working UI login and API key.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--email", default=DEFAULT_EMAIL, show_default=True, help="when there is no user")
def first_login(path: Path, email: str) -> None:
    with unit_of_work() as session:
        login = _still_valid(session, path) or _fresh_login(session, email)
        undecryptable = _undecryptable_accounts(session)
    if not login.notes:
        login.notes.append(f"kept: the login in {path} still works")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(login.text())
    for note in login.notes:
        click.echo(f"run: {note}")
    if undecryptable:
        click.echo(
            f"run: WARNING: {len(undecryptable)} account secret(s) in this database cannot be "
            f"decrypted with CREDENTIALS_KEY (accounts {', '.join(map(str, undecryptable))}): "
            "the database was made with another .env. Put that .env's CREDENTIALS_KEY back, "
            "or set the passwords again (PATCH /api/v1/accounts/<id> with a password); "
            "until then those accounts cannot send."
        )
    click.echo(login.text(), nl=False)


def _still_valid(session: Session, path: Path) -> FirstLogin | None:
    try:
        lines = dict(line.split(": ", 1) for line in path.read_text().splitlines() if ": " in line)
    except OSError:
        return None
    email, password, key = lines.get("login"), lines.get("password"), lines.get("api key")
    if not (email and password and key):
        return None
    user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    api_key = session.execute(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if user is None or api_key is None or not check_password_hash(user.password_hash, password):
        return None
    return FirstLogin(email, password, key)


def _fresh_login(session: Session, email: str) -> FirstLogin:
    password = secrets.token_urlsafe(12)
    user = session.execute(select(User).order_by(User.id).limit(1)).scalar_one_or_none()
    notes = []
    if user is None:
        user = User(email=email)
        session.add(user)
        notes.append(f"created the user {email}")
    else:
        notes.append(
            f"the database already has users: reset the password of the first one, {user.email}"
        )
    user.password_hash = generate_password_hash(password)
    if user.id is None:  # new: the dev's own installation, so admin of its first client
        add_member(session, user, None, UserRole.ADMIN)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    # The installation's operator: an admin key (system limits, clients, any client by
    # X-Sendfleet-Client); `keys create NAME --client ID` makes a client's own.
    row, key = create_key(session, f"{KEY_NAME} {stamp}", is_admin=True)
    notes.append(f"created admin API key {row.id} ({row.name}); older keys stay valid")
    return FirstLogin(user.email, password, key, notes)


def _undecryptable_accounts(session: Session) -> list[int]:
    box = SecretBox(current_app.extensions["settings"].credentials_key.get_secret_value())
    failed = []
    rows = session.execute(
        select(Account.id, Account.secret_encrypted)
        .where(Account.secret_encrypted.is_not(None))
        .order_by(Account.id)
    )
    for account_id, token in rows:
        try:
            box.decrypt(token)
        except ValueError:
            failed.append(account_id)
    return failed
