"""`flask --app app import CAMPAIGN_ID FILE.csv [--email-column NAME]`: one transaction,
the report on stdout. A local file is bounded by IMPORT_MAX_ROWS only: IMPORT_MAX_BYTES
is the limit of HTTP uploads."""

from __future__ import annotations

from typing import BinaryIO

import click
from flask import current_app

from app.db import unit_of_work
from app.errors import DomainError
from app.services.campaigns import import_file
from app.settings import Settings


@click.command("import", help="Import recipients from a CSV file into a campaign (all or none).")
@click.argument("campaign_id", type=int)
@click.argument("file", type=click.File("rb"))
@click.option(
    "--check-mx/--no-check-mx",
    default=None,
    help="Reject addresses whose domain has no MX (default: the IMPORT_CHECK_MX setting).",
)
@click.option(
    "--email-column",
    default=None,
    help="The header of the column holding the addresses (case-insensitive), when the "
    "importer does not recognise it or finds several.",
)
def import_command(
    campaign_id: int, file: BinaryIO, check_mx: bool | None, email_column: str | None
) -> None:
    settings: Settings = current_app.extensions["settings"]
    if check_mx is not None:
        settings = settings.model_copy(update={"import_check_mx": check_mx})
    try:
        with unit_of_work() as session:
            report = import_file(session, campaign_id, file, settings, email_column=email_column)
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
    for warning in report.warnings():
        click.echo(f"Warning: {warning}")
