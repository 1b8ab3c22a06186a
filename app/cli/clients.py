from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.db import unit_of_work
from app.errors import DomainError
from app.services.clients import create_client, list_clients
from app.services.limits import load_limits


@click.group(cls=AppGroup, help="Clients: create, list.")
def clients() -> None:
    pass


@clients.command("create", help="Create a client; prints its id alone on the last line.")
@click.argument("name")
def create(name: str) -> None:
    try:
        with unit_of_work() as session:
            client = create_client(session, name)
            client_id = client.id
    except DomainError as exc:
        raise click.BadParameter(exc.message, param_hint="NAME") from None
    click.echo(f"Created client {client_id} ({name.strip()}).", err=True)
    click.echo(client_id)


@clients.command("list", help="List clients: id, name, status, caps (the client limits).")
def list_command() -> None:
    with unit_of_work() as session:
        rows = list_clients(session)
        table = load_limits(session, current_app.extensions["settings"])
        lines = [
            f"{c.id}\t{c.name}\t{c.status}\tdaily cap {_cap(table.client(c.id).per_day)}"
            f"\tper minute {_cap(table.client(c.id).per_minute)}"
            for c in rows
        ]
    for line in lines:
        click.echo(line)


def _cap(value: int | None) -> str:
    return "-" if value is None else str(value)
