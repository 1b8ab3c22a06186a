"""The wizard's dry runs: the real campaign service (app.services.campaigns.create_campaign,
the API's own path) inside a SAVEPOINT that is always rolled back. The validation report,
the rejected rows and the preview are therefore exactly what creating the campaign would
give, and nothing is stored until the operator creates it."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.models import Account, AccountStatus, Campaign, Recipient
from app.services import campaigns as campaign_service
from app.services.csv_export import neutralise
from app.services.csv_reader import CsvSource
from app.services.forecast import campaign_allows
from app.services.imports import ImportReport
from app.services.outgoing import build_outgoing
from app.settings import Settings
from app.web.csv_peek import header_cells
from app.web.wizard_state import Wizard
from rotator.message import make_message_id
from rotator.templates import TemplateError

PREVIEW_CHOICES = 50
PREVIEW_SAMPLE_ROWS = 500
STAND_IN_SENDER = "sender@example.com"
PREVIEW_ID = 0  # the preview's recipient id: its unsubscribe link is shaped like the real one


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _every_field_template(fields: list[str]) -> str:
    # Templates that use every field: the report then counts blank values of each.
    return " ".join(f"{{{{ {name} }}}}" for name in fields) or "x"


def campaign_data(wizard: Wizard, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": wizard.name or wizard.filename,
        "subject": wizard.subject,
        "body_text": wizard.body_text,
        "body_html": wizard.body_html or None,
        "from_name": wizard.from_name or None,
        **wizard.senders,
        "window": wizard.window,
        "daily_cap": wizard.daily_cap,
    }
    data.update(overrides)
    return data


class _DryRun:
    """`with _DryRun(...) as (session, campaign, report)`: created, then rolled back."""

    def __init__(
        self,
        wizard: Wizard,
        data: Mapping[str, Any],
        settings: Settings,
        path: Path | None = None,
    ) -> None:
        self.wizard, self.data, self.settings = wizard, data, settings
        self.path = path or wizard.path

    def __enter__(self) -> tuple[Session, Campaign, ImportReport]:
        self._uow = unit_of_work()
        session = self._uow.__enter__()
        self._savepoint = session.begin_nested()
        self._file = self.path.open("rb")
        try:
            campaign, report = campaign_service.create_campaign(
                session,
                self.data,
                self.settings,
                csv=self._file,
                email_column=self.wizard.email_column,
                client_id=self.wizard.client_id,
            )
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        return session, campaign, report

    def __exit__(self, *exc_info: Any) -> None:
        self._file.close()
        self._savepoint.rollback()
        self._uow.__exit__(None, None, None)


def validation_report(wizard: Wizard, fields: list[str]) -> dict[str, Any]:
    """Imported / invalid / duplicate / suppressed with reasons, and the blank values of
    every field (the message is not written yet, so every field counts)."""
    template = _every_field_template(fields)
    data = campaign_data(wizard, subject="x", body_text=template, body_html=None, name="validation")
    with _DryRun(wizard, data, _settings()) as (_, _, report):
        return report.as_dict()


def rejected_rows(wizard: Wizard) -> Iterator[str]:
    """The file's rejected rows as CSV (every column as uploaded, then the row number and
    the reason), spreadsheet formulas neutralised."""
    settings = _settings()
    unlimited = settings.model_copy(update={"import_error_limit": settings.import_max_rows})
    data = campaign_data(wizard, subject="x", body_text="x", body_html=None, name="rejected")
    with _DryRun(wizard, data, unlimited) as (_, _, report):
        reasons = {e.row: e.reason for e in report.errors}
    out = io.StringIO()
    writer = csv.writer(out)
    with wizard.path.open("rb") as stream:
        source = CsvSource(stream, max_bytes=None, email_column=wizard.email_column)
        header = source.read_header()
        columns = header.names
        writer.writerow([neutralise(c) for c in [*columns, "row", "reason"]])
        yield _take(out)
        for row_no, cells in source.rows():
            reason = reasons.get(row_no)
            if reason is not None:
                writer.writerow([neutralise(c) for c in [*cells, str(row_no), reason]])
                yield _take(out)


def _take(out: io.StringIO) -> str:
    value = out.getvalue()
    out.seek(0)
    out.truncate()
    return value


def preview(wizard: Wizard, data: Mapping[str, Any], email: str | None) -> dict[str, Any]:
    """The message for `email` (else the first imported recipient), built by the send
    path's builder from the fields as the import stores them, and the addresses to choose
    from. :raises DomainError: the templates or settings are refused, as at creation."""
    settings = _settings()
    with _DryRun(wizard, data, settings, preview_sample(wizard)) as (session, campaign, _):
        recipients = list(
            session.execute(
                select(Recipient.email)
                .where(Recipient.campaign_id == campaign.id)
                .order_by(Recipient.id)
                .limit(PREVIEW_CHOICES)
            ).scalars()
        )
        wanted = select(Recipient).where(Recipient.campaign_id == campaign.id)
        if email:
            wanted = wanted.where(Recipient.email == email.strip().lower())
        chosen = session.execute(wanted.order_by(Recipient.id).limit(1)).scalar_one_or_none()
        account = _sending_account(session, campaign)
        if chosen is None:
            return {"recipients": recipients, "chosen": None, "problem": "no recipient to preview"}
        warning = None
        if account is None:
            # Shown all the same, from a stand-in sender (never stored).
            warning = (
                "No account can send this campaign yet: add one on the Accounts page, or "
                "choose other senders. The From shown is a stand-in."
            )
            account = Account(name="no account yet", email=STAND_IN_SENDER, from_name=None)
        try:
            outgoing = build_outgoing(
                settings,
                campaign,
                account,
                recipient_id=PREVIEW_ID,
                email=chosen.email,
                fields=chosen.fields,
                message_id=make_message_id(account.email.rsplit("@", 1)[1]),
            )
        except TemplateError as exc:
            return {"recipients": recipients, "chosen": chosen.email, "problem": str(exc)}
        return {
            "recipients": recipients,
            "chosen": chosen.email,
            "account": {"name": account.name, "email": account.email},
            "problem": None,
            "warning": warning,
            **_shown(outgoing.raw),
        }


def preview_sample(wizard: Wizard) -> Path:
    """The header and first PREVIEW_SAMPLE_ROWS rows of the upload, written once: the
    live preview imports these on every keystroke, not the whole file. The cells are the
    file's own (re-quoted), so the fields stored for a recipient are the same."""
    sample = wizard.path.with_suffix(".sample.csv")
    if sample.exists():
        return sample
    with wizard.path.open("rb") as stream:
        source = CsvSource(stream, max_bytes=None, email_column=wizard.email_column)
        header = source.read_header()
        columns = header_cells(wizard.path, header.header_row)
        partial = sample.with_suffix(".part")
        with partial.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(columns)
            for n, (_, cells) in enumerate(source.rows(), 1):
                writer.writerow(cells)
                if n >= PREVIEW_SAMPLE_ROWS:
                    break
    partial.replace(sample)
    return sample


def _sending_account(session: Session, campaign: Campaign) -> Account | None:
    accounts = session.execute(
        select(Account)
        .where(Account.client_id == campaign.client_id)
        .order_by(Account.status != AccountStatus.ACTIVE.value, Account.id)
    ).scalars()
    return next((a for a in accounts if campaign_allows(campaign, a)), None)


def _shown(raw: bytes) -> dict[str, Any]:
    message = message_from_bytes(raw, policy=default_policy)
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    return {
        "headers": [(k, str(v)) for k, v in message.items()],
        "text": text_part.get_content() if text_part is not None else "",
        "html": html_part.get_content() if html_part is not None else None,
        "raw_size": len(raw),
    }


def create(wizard: Wizard) -> tuple[int, dict[str, Any]]:
    """The campaign for real: the same call, committed."""
    with unit_of_work() as session, wizard.path.open("rb") as stream:
        campaign, report = campaign_service.create_campaign(
            session,
            campaign_data(wizard),
            _settings(),
            csv=stream,
            email_column=wizard.email_column,
            client_id=wizard.client_id,
        )
    return campaign.id, report.as_dict()
