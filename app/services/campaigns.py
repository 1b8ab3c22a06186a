"""Campaigns: creation with their recipients and a template check in one transaction,
more recipients later, state changes by conditional UPDATE, counts and recipient pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, BinaryIO

from sqlalchemy import exists, func, select, true, update
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from app.models import (
    TRANSITIONS,
    Account,
    Campaign,
    CampaignStatus,
    Event,
    EventType,
    Recipient,
)
from app.services import imports, recipient_counts
from app.services.clients import default_client_id, owner
from app.services.import_slots import import_turn
from app.services.templating import campaign_templates, check_templates
from app.settings import Settings
from rotator.templates import CompiledTemplates

# Recipients may be added until nothing more will be sent.
CLOSED_STATUSES = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)
EVENTS = {
    "start": EventType.CAMPAIGN_STARTED,
    "pause": EventType.CAMPAIGN_PAUSED,
    "resume": EventType.CAMPAIGN_RESUMED,
    "cancel": EventType.CAMPAIGN_CANCELLED,
}
_SHOWN = (
    "id", "client_id", "name", "status", "subject", "body_text", "body_html", "from_name",
    "account_tags", "account_ids", "window", "daily_cap", "priority", "field_names",
    "created_at", "updated_at", "started_at", "completed_at", "paused_reason", "paused_by",
    "pause_details",
)  # fmt: skip


def create_campaign(
    session: Session,
    data: Mapping[str, Any],
    settings: Settings,
    *,
    csv: BinaryIO | None = None,
    email_column: str | None = None,
    client_id: int | None = None,
) -> tuple[Campaign, imports.ImportReport]:
    """The campaign, its recipients (from `csv`, else `data["recipients"]`) and the
    template checks of app.services.templating. The caller's transaction holds it all:
    any error leaves nothing behind."""
    importing = csv is not None or bool(data.get("recipients"))
    with import_turn() if importing else nullcontext():
        templates = campaign_templates(
            settings, data["subject"], data["body_text"], data.get("body_html")
        )
        if data.get("account_ids"):
            _check_accounts_exist(session, data["account_ids"], client_id)
        campaign = Campaign(
            **owner(client_id),
            name=data["name"],
            subject=data["subject"],
            body_text=data["body_text"],
            body_html=data.get("body_html") or None,
            from_name=data.get("from_name") or None,
            account_tags=data.get("account_tags") or None,
            account_ids=data.get("account_ids") or None,
            window=data.get("window"),
            daily_cap=data.get("daily_cap"),
            priority=data.get("priority", 1),
            status=CampaignStatus.DRAFT.value,
            field_names=[],
        )
        session.add(campaign)
        session.flush()
        rows = data.get("recipients", [])
        if csv is None and not rows:
            # Recipients may come later (POST .../recipients); start refuses an empty campaign.
            report = imports.ImportReport(
                0, {"invalid": 0, "duplicate": 0, "suppressed": 0}, [], []
            )
        else:
            report = _import(
                session,
                campaign,
                settings,
                templates,
                csv=csv,
                rows=rows,
                email_column=email_column,
            )
        check_templates(templates, campaign.field_names, report)
        return campaign, report


@import_turn()  # before the campaign's lock (app.services.import_slots)
def add_recipients(
    session: Session,
    campaign_id: int,
    settings: Settings,
    *,
    csv: BinaryIO | None = None,
    rows: Sequence[Mapping[str, Any]] = (),
    email_column: str | None = None,
    client_id: int | None,
) -> imports.ImportReport:
    """More recipients, checked against the templates as at creation; a template problem
    these recipients would hit at send time is a 422 and nothing is added."""
    # The importer's lock (FOR NO KEY UPDATE), taken first here: a concurrent cancel or
    # import waits for this one instead of racing it.
    status = session.execute(
        select(Campaign.status)
        .where(Campaign.id == campaign_id, _owned(client_id))
        .with_for_update(key_share=True)
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    if status in CLOSED_STATUSES:
        raise Conflict(
            f"campaign {campaign_id} is {status}: recipients can no longer be added",
            code="campaign_closed",
        )
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    templates = _templates_of(campaign, settings)
    report = _import(
        session, campaign, settings, templates, csv=csv, rows=rows, email_column=email_column
    )
    check_templates(templates, campaign.field_names, report)
    return report


@import_turn()
def import_file(
    session: Session,
    campaign_id: int,
    stream: BinaryIO,
    settings: Settings,
    *,
    email_column: str | None = None,
) -> imports.ImportReport:
    """`flask import`: a local CSV file, bounded by import_max_rows only (not by the
    upload limit import_max_bytes), with the same template checks as the API."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist", field="campaign")
    templates = _templates_of(campaign, settings)
    report = imports.import_csv(
        session,
        campaign_id,
        stream,
        settings,
        limit_bytes=False,
        email_column=email_column,
        template_fields=templates.variables,
    )
    check_templates(templates, campaign.field_names, report)
    return report


def change_status(
    session: Session, campaign_id: int, action: str, *, client_id: int | None
) -> dict[str, Any]:
    """start, pause, resume or cancel by ONE conditional UPDATE (app.models.TRANSITIONS).
    Recipients are left as they are: the dispatcher only claims running campaigns' rows."""
    sources, target = TRANSITIONS[action]
    values: dict[str, Any] = {"status": target.value, "updated_at": func.now()}
    stmt = update(Campaign).where(
        Campaign.id == campaign_id,
        Campaign.status.in_([s.value for s in sources]),
        _owned(client_id),
    )
    # A guard that paused the campaign says why; an operator's pause says so, and going
    # back to running clears the reason.
    values["paused_reason"] = "paused by an operator" if action == "pause" else None
    values["paused_by"] = "operator" if action == "pause" else None
    values["pause_details"] = None
    if action == "start":
        values["started_at"] = func.now()
        stmt = stmt.where(exists().where(Recipient.campaign_id == Campaign.id))
    changed = session.execute(
        stmt.values(**values).returning(Campaign.id).execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        _refuse(session, campaign_id, action, client_id)
    session.add(Event(type=EVENTS[action].value, campaign_id=campaign_id, data={"source": "api"}))
    return get_campaign(session, campaign_id, client_id=client_id)


def get_campaign(session: Session, campaign_id: int, *, client_id: int | None) -> dict[str, Any]:
    campaign = _find(session, campaign_id, client_id)
    return _view(campaign, _counts(session, [campaign_id])[campaign_id])


def _find(session: Session, campaign_id: int, client_id: int | None) -> Campaign:
    """The campaign, if it is `client_id`'s (any client's when None: the CLI). Another
    client's campaign is "no campaign", exactly as a missing one."""
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None or (client_id is not None and campaign.client_id != client_id):
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


def _owned(client_id: int | None) -> Any:
    return true() if client_id is None else Campaign.client_id == client_id


def list_campaigns(
    session: Session, *, client_id: int, before_id: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The client's campaigns, newest first; returns a page and the id to continue
    before, if more follow."""
    stmt = (
        select(Campaign)
        .where(Campaign.client_id == client_id)
        .order_by(Campaign.id.desc())
        .limit(limit + 1)
    )
    if before_id is not None:
        stmt = stmt.where(Campaign.id < before_id)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    counts = _counts(session, [c.id for c in rows])
    return [_view(c, counts[c.id]) for c in rows], (rows[-1].id if more else None)


def list_recipients(
    session: Session,
    campaign_id: int,
    *,
    status: str | None,
    after_id: int | None,
    limit: int,
    client_id: int | None,
) -> tuple[list[Recipient], int | None]:
    """A page of a campaign's recipients by id (keyset); the last id when more follow."""
    _find(session, campaign_id, client_id)
    stmt = (
        select(Recipient)
        .where(Recipient.campaign_id == campaign_id)
        .order_by(Recipient.id)
        .limit(limit + 1)
    )
    if status is not None:
        stmt = stmt.where(Recipient.status == status)
    if after_id is not None:
        stmt = stmt.where(Recipient.id > after_id)
    rows = list(session.execute(stmt).scalars())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


def _import(
    session: Session,
    campaign: Campaign,
    settings: Settings,
    templates: CompiledTemplates,
    *,
    csv: BinaryIO | None,
    rows: Sequence[Mapping[str, Any]],
    email_column: str | None,
) -> imports.ImportReport:
    """The importer also adds the new field names to campaign.field_names (they only
    grow, so a template that was valid stays valid), and counts blank values of the
    fields the templates use."""
    used = templates.variables
    if csv is not None:
        return imports.import_csv(
            session, campaign.id, csv, settings, email_column=email_column, template_fields=used
        )
    return imports.import_rows(session, campaign.id, rows, settings, template_fields=used)


def _templates_of(campaign: Campaign, settings: Settings) -> CompiledTemplates:
    return campaign_templates(settings, campaign.subject, campaign.body_text, campaign.body_html)


def _check_accounts_exist(
    session: Session, account_ids: Sequence[int], client_id: int | None
) -> None:
    """The accounts must be the campaign's client's: another client's is "no account"."""
    owner = client_id if client_id is not None else default_client_id(session)
    found = set(
        session.execute(
            select(Account.id).where(Account.id.in_(account_ids), Account.client_id == owner)
        ).scalars()
    )
    missing = [i for i in account_ids if i not in found]
    if missing:
        listed = ", ".join(map(str, missing))
        raise InvalidInput(f"no account with id {listed}", field="account_ids")


def _refuse(session: Session, campaign_id: int, action: str, client_id: int | None) -> None:
    status = session.execute(
        select(Campaign.status).where(Campaign.id == campaign_id, _owned(client_id))
    ).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    sources, _ = TRANSITIONS[action]
    if action == "start" and status in sources:
        raise Conflict(
            f"campaign {campaign_id} has no recipients: add some before starting it",
            code="no_recipients",
        )
    allowed = " or ".join(sorted(s.value for s in sources))
    raise InvalidTransition(
        f"campaign {campaign_id} is {status}: {action} is allowed only from {allowed}"
    )


def _counts(session: Session, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Recipients by status for each campaign, every status present, from the counter
    table the triggers keep (app.services.recipient_counts): a few rows per campaign,
    not one per recipient."""
    return recipient_counts.campaign_counts(session, campaign_ids)


def _view(campaign: Campaign, counts: dict[str, int]) -> dict[str, Any]:
    return {**{key: getattr(campaign, key) for key in _SHOWN}, "counts": counts}
