"""`flask --app app import CAMPAIGN_ID FILE.csv`: one transaction, the report on stdout."""

from __future__ import annotations

from typing import BinaryIO

import click
from flask import current_app

from app.db import unit_of_work
from app.errors import DomainError
from app.services.imports import import_csv
from app.settings import Settings


@click.command("import", help="Import recipients from a CSV file into a campaign (all or none).")
@click.argument("campaign_id", type=int)
@click.argument("file", type=click.File("rb"))
@click.option(
    "--check-mx/--no-check-mx",
    default=None,
    help="Reject addresses whose domain has no MX (default: the IMPORT_CHECK_MX setting).",
)
def import_command(campaign_id: int, file: BinaryIO, check_mx: bool | None) -> None:
    settings: Settings = current_app.extensions["settings"]
    if check_mx is not None:
        settings = settings.model_copy(update={"import_check_mx": check_mx})
    try:
        with unit_of_work() as session:
            report = import_csv(session, campaign_id, file, settings)
    except DomainError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise click.ClickException(f"{where}{exc.message}; nothing was imported") from None
    rejected = report.rejected
    click.echo(f"Imported {report.imported} recipients into campaign {campaign_id}.")
    click.echo(
        f"Rejected: {rejected['invalid']} invalid, {rejected['duplicate']} duplicate, "
        f"{rejected['suppressed']} suppressed."
    )
    if report.errors:
        shown = len(report.errors)
        total = sum(rejected.values())
        title = f"First {shown} of {total} rejected rows:" if shown < total else "Rejected rows:"
        click.echo(title)
        for error in report.errors:
            click.echo(f"  row {error.row}\t{error.email or '-'}\t{error.reason}")
