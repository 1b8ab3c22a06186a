"""Suppressions: addresses and whole domains no campaign may send to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import (
    DUE_STATUSES,
    OPEN_STATUSES,
    Campaign,
    Event,
    EventType,
    Recipient,
    RecipientStatus,
    Suppression,
    SuppressionKind,
    SuppressionReason,
)
from app.services.addresses import AddressValidator

API_SOURCE = "api"


def normalise(kind: SuppressionKind, raw: str) -> str:
    """The form recipients are stored in (app.services.addresses): a lower-cased address,
    or a domain as email-validator normalises it (IDNA in Unicode form)."""
    raw = raw.strip()
    # The shortest local part: the probe checks the domain, not the address length.
    probe = raw if kind is SuppressionKind.EMAIL else f"a@{raw.rstrip('.')}"
    if kind is SuppressionKind.DOMAIN and ("@" in raw or "." not in raw):
        raise InvalidInput(f"domain: {raw!r} is not a domain name", field="domain")
    result = AddressValidator(check_mx=False).check(probe)
    if isinstance(result, str) and kind is SuppressionKind.DOMAIN:
        raise InvalidInput(f"domain: {raw!r} is not a valid domain name", field="domain")
    if isinstance(result, str):
        raise InvalidInput(f"email: {result}", field="email")
    return result.email if kind is SuppressionKind.EMAIL else result.domain


def add_suppression(
    session: Session,
    kind: SuppressionKind,
    raw: str,
    *,
    reason: str,
    source: str = API_SOURCE,
) -> tuple[Suppression, bool]:
    """Suppresses an address or a domain. Returns the row and whether it is new; an
    existing value is left as it was (idempotent)."""
    value = normalise(kind, raw)
    # ON CONFLICT: two concurrent requests for the same value both succeed, one creates.
    new_id = session.execute(
        pg_insert(Suppression)
        .values(kind=kind.value, value=value, reason=reason, source=source)
        .on_conflict_do_nothing(index_elements=[Suppression.client_id, Suppression.value])
        .returning(Suppression.id)
    ).scalar_one_or_none()
    row = session.execute(
        select(Suppression).where(Suppression.value == value, Suppression.client_id.is_(None))
    ).scalar_one()
    if new_id is not None:
        suppress_waiting_recipients(session, kind, value, source=source)
    return row, new_id is not None


def suppress_waiting_recipients(
    session: Session,
    kind: SuppressionKind,
    value: str,
    *,
    source: str = API_SOURCE,
    status: RecipientStatus = RecipientStatus.SUPPRESSED,
    event: EventType = EventType.SUPPRESSED,
) -> int:
    """Moves this address's (or domain's) recipients that still wait to be sent, in every
    campaign, to `status` (`suppressed`, or `unsubscribed` for an unsubscribe) with an event
    each, so counts stay true. Rows already queued or sending are left to the send path,
    which re-checks suppressions before sending."""
    column = Recipient.email if kind is SuppressionKind.EMAIL else Recipient.domain
    moved = (
        update(Recipient)
        .where(
            # Through the open campaigns, so the lookup uses uq_recipients_campaign_email.
            Recipient.campaign_id.in_(
                select(Campaign.id).where(Campaign.status.in_([s.value for s in OPEN_STATUSES]))
            ),
            column == value,
            Recipient.status.in_([s.value for s in DUE_STATUSES]),
        )
        .values(status=status.value, updated_at=func.now())
        .returning(Recipient.id, Recipient.campaign_id)
        .cte("moved")
    )
    # One statement: the UPDATE and the events it causes.
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        insert(Event).from_select(
            ["type", "campaign_id", "recipient_id", "data"],
            select(
                literal(event.value),
                moved.c.campaign_id,
                moved.c.id,
                func.jsonb_build_object("suppression", value, "source", source),
            ),
        )
    )
    return result.rowcount


def list_suppressions(
    session: Session, *, query: str | None, after_id: int | None, limit: int
) -> tuple[list[Suppression], int | None]:
    """A page of suppressions by id; returns the rows and the last id when more follow."""
    stmt = select(Suppression).order_by(Suppression.id).limit(limit + 1)
    if query:
        stmt = stmt.where(Suppression.value.contains(query.lower(), autoescape=True))
    if after_id is not None:
        stmt = stmt.where(Suppression.id > after_id)
    rows = list(session.execute(stmt).scalars())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None


# A person's own opt-out (or their complaint): lifting it must be a deliberate act.
OPT_OUT_REASONS = frozenset(
    {SuppressionReason.UNSUBSCRIBED.value, SuppressionReason.COMPLAINED.value}
)


class ConfirmationRequired(Conflict):
    code = "confirmation_required"


def delete_suppression(
    session: Session, raw: str, *, confirmed: bool = False, who: dict[str, Any] | None = None
) -> Suppression:
    """Lifts a suppression and records who did it (a `suppression_deleted` event). An
    unsubscribe or a complaint is lifted only when `confirmed`."""
    row = find_suppression(session, raw)
    if row.reason in OPT_OUT_REASONS and not confirmed:
        opted = "unsubscribed" if row.reason == SuppressionReason.UNSUBSCRIBED else "complained"
        raise ConfirmationRequired(
            f"confirm: {row.value!r} is suppressed because the person {opted}; it is their "
            "opt-out. Delete it only if they asked to be mailed again, with ?confirm=true",
            field="confirm",
        )
    session.add(
        Event(
            type=EventType.SUPPRESSION_DELETED.value,
            data={
                "value": row.value,
                "kind": row.kind,
                "reason": row.reason,
                "source": row.source,
                "confirmed": confirmed,
                "who": who or {},
            },
        )
    )
    session.delete(row)
    return row


def find_suppression(session: Session, raw: str) -> Suppression:
    kind = SuppressionKind.EMAIL if "@" in raw else SuppressionKind.DOMAIN
    try:
        value = normalise(kind, raw)
    except InvalidInput:
        value = raw.strip().lower()
    row = None
    if "\x00" not in value:  # PostgreSQL text cannot hold NUL: such a value is never stored
        # A value may be suppressed globally and by clients; the global row comes first.
        row = session.execute(
            select(Suppression)
            .where(Suppression.value == value)
            .order_by(Suppression.client_id.nulls_first(), Suppression.id)
            .limit(1)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{raw!r} is not suppressed")
    return row
