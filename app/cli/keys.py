from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import AppGroup
from sqlalchemy import select, update

from app.api.auth import create_key
from app.db import unit_of_work
from app.errors import NotFound
from app.models import ApiKey
from app.services.clients import default_client_id, get_client


@click.group(cls=AppGroup, help="API keys: create, list, revoke.")
def keys() -> None:
    pass


@keys.command("create", help="Create an API key; prints the key alone on the last line.")
@click.argument("name")
@click.option(
    "--client", "client_id", type=int, help="The client's id (default: the default client)."
)
@click.option("--admin", is_flag=True, help="May manage clients and act for any client.")
def create(name: str, client_id: int | None, admin: bool) -> None:
    with unit_of_work() as session:
        try:
            client = get_client(session, client_id or default_client_id(session))
        except NotFound as exc:
            raise click.BadParameter(exc.message, param_hint="--client") from None
        row, key = create_key(session, name, client_id=client.id, is_admin=admin)
        client_name = client.name
    kind = "admin API key" if admin else "API key"
    click.echo(
        f"Created {kind} {row.id} ({name}) of client {row.client_id} ({client_name}). "
        "It is shown once; store it now:",
        err=True,
    )
    click.echo(key)


@keys.command("list", help="List API keys (never the keys themselves).")
def list_keys() -> None:
    with unit_of_work() as session:
        rows = session.execute(select(ApiKey).order_by(ApiKey.id)).scalars().all()
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        admin = "\tadmin" if row.is_admin else ""
        click.echo(
            f"{row.id}\t{row.name}\t{row.prefix}…\tclient {row.client_id}\t{state}"
            f"\tlast used {used}{admin}"
        )


@keys.command("revoke", help="Revoke an API key by id.")
@click.argument("key_id", type=int)
def revoke(key_id: int) -> None:
    with unit_of_work() as session:
        result = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
    if result.rowcount != 1:
        raise click.ClickException(f"no active API key with id {key_id}")
    click.echo(f"Revoked API key {key_id}.")
