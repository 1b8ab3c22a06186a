from __future__ import annotations

import click
from email_validator import EmailNotValidError, validate_email
from flask.cli import AppGroup
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from app.db import unit_of_work
from app.errors import NotFound
from app.models import User, UserRole
from app.services.clients import add_member

MIN_PASSWORD_LENGTH = 10


@click.group(cls=AppGroup, help="UI users.")
def users() -> None:
    pass


def _checked(email: str, password: str) -> str:
    try:
        email = validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise click.BadParameter(str(exc), param_hint="EMAIL") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.BadParameter(
            f"must be at least {MIN_PASSWORD_LENGTH} characters", param_hint="--password"
        )
    return email


@users.command("create", help="Create a UI user; the password comes from --password or a prompt.")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option(
    "--client", "client_id", type=int, help="The client's id (default: the default client)."
)
@click.option(
    "--role",
    type=click.Choice([r.value for r in UserRole]),
    default=UserRole.MEMBER.value,
    show_default=True,
    help="The user's role in that client.",
)
def create(email: str, password: str, client_id: int | None, role: str) -> None:
    email = _checked(email, password)
    with unit_of_work() as session:
        if session.execute(select(User.id).where(User.email == email)).first():
            raise click.ClickException(f"a user {email} already exists")
        user = User(email=email, password_hash=generate_password_hash(password))
        session.add(user)
        try:
            membership = add_member(session, user, client_id, UserRole(role))
        except NotFound as exc:
            raise click.BadParameter(exc.message, param_hint="--client") from None
        joined = membership.client_id
    click.echo(f"Created user {email}, {role} of client {joined}.")


@users.command("set-password", help="Set a UI user's password, from --password or a prompt.")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def set_password(email: str, password: str) -> None:
    email = _checked(email, password)
    with unit_of_work() as session:
        user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None:
            raise click.ClickException(f"no user {email}")
        user.password_hash = generate_password_hash(password)
    click.echo(f"Set the password of {email}.")
