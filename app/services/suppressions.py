"""Suppressions: addresses and whole domains no campaign may send to.

By what they mean: an unsubscribe is from one client (the one that sent the message) and
stops that client's campaigns only; a hard bounce, a complaint and an operator's block are
global (client NULL), honoured by every client. A client's key adds and lifts its own
client's rows; global rows are lifted with an admin key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.errors import Conflict, Forbidden, InvalidInput, NotFound
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
# What the address's owner or its server said: true for every client.
GLOBAL_REASONS = frozenset({SuppressionReason.BOUNCED.value, SuppressionReason.COMPLAINED.value})


def owner_of(reason: str, *, client_id: int, is_admin: bool) -> int | None:
    """The client a new suppression belongs to (None: global). Bounces and complaints are
    global; an unsubscribe is the client's; a manual block is global from an admin key (the
    operator's) and the client's own from a client's key."""
    if reason in GLOBAL_REASONS:
        return None
    if reason == SuppressionReason.MANUAL.value and is_admin:
        return None
    return client_id


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
    client_id: int | None = None,
) -> tuple[Suppression, bool]:
    """Suppresses an address or a domain, for one client or (client_id None) for all.
    Returns the row and whether it is new; an existing value is left as it was
    (idempotent)."""
    value = normalise(kind, raw)
    # ON CONFLICT: two concurrent requests for the same value both succeed, one creates.
    new_id = session.execute(
        pg_insert(Suppression)
        .values(kind=kind.value, value=value, reason=reason, source=source, client_id=client_id)
        .on_conflict_do_nothing(index_elements=[Suppression.client_id, Suppression.value])
        .returning(Suppression.id)
    ).scalar_one_or_none()
    row = session.execute(
        select(Suppression).where(Suppression.value == value, _owned_by(client_id))
    ).scalar_one()
    if new_id is not None:
        suppress_waiting_recipients(session, kind, value, source=source, client_id=client_id)
    return row, new_id is not None


def _owned_by(client_id: int | None) -> Any:
    if client_id is None:
        return Suppression.client_id.is_(None)
    return Suppression.client_id == client_id


def visible_to(client_id: int) -> Any:
    """The rows a client's campaigns honour: the global ones and its own."""
    return Suppression.client_id.is_(None) | (Suppression.client_id == client_id)


def suppress_waiting_recipients(
    session: Session,
    kind: SuppressionKind,
    value: str,
    *,
    source: str = API_SOURCE,
    status: RecipientStatus = RecipientStatus.SUPPRESSED,
    event: EventType = EventType.SUPPRESSED,
    client_id: int | None = None,
) -> int:
    """Moves this address's (or domain's) recipients that still wait to be sent, in every
    campaign of `client_id` (every client's when None), to `status` (`suppressed`, or
    `unsubscribed` for an unsubscribe) with an event each, so counts stay true. Rows
    already queued or sending are left to the send path, which re-checks suppressions
    before sending."""
    column = Recipient.email if kind is SuppressionKind.EMAIL else Recipient.domain
    open_campaigns = select(Campaign.id).where(
        Campaign.status.in_([s.value for s in OPEN_STATUSES])
    )
    if client_id is not None:
        open_campaigns = open_campaigns.where(Campaign.client_id == client_id)
    moved = (
        update(Recipient)
        .where(
            # Through the open campaigns, so the lookup uses uq_recipients_campaign_email.
            Recipient.campaign_id.in_(open_campaigns),
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
    session: Session, *, client_id: int, query: str | None, after_id: int | None, limit: int
) -> tuple[list[Suppression], int | None]:
    """A page of the suppressions a client honours (global and its own) by id; returns the
    rows and the last id when more follow."""
    stmt = (
        select(Suppression).where(visible_to(client_id)).order_by(Suppression.id).limit(limit + 1)
    )
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
    session: Session,
    raw: str,
    *,
    client_id: int,
    is_admin: bool = False,
    confirmed: bool = False,
    who: dict[str, Any] | None = None,
) -> Suppression:
    """Lifts a suppression and records who did it (a `suppression_deleted` event). An
    unsubscribe or a complaint is lifted only when `confirmed`. An admin key lifts the
    global row first, then the client's; a client's key only its own client's row."""
    row = find_suppression(session, raw, client_id=client_id, global_first=is_admin)
    if row.client_id is None and not is_admin:
        raise Forbidden(
            f"{row.value!r} is suppressed for every client ({row.reason}): an admin key lifts it",
            field="value",
        )
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
                "global": row.client_id is None,
            },
            client_id=client_id if row.client_id is None else row.client_id,
        )
    )
    session.delete(row)
    return row


def find_suppression(
    session: Session, raw: str, *, client_id: int, global_first: bool = True
) -> Suppression:
    """The suppression of `raw` that `client_id` honours: the global row or its own
    (which comes first, as `global_first` says)."""
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
            .where(Suppression.value == value, visible_to(client_id))
            .order_by(
                Suppression.client_id.nulls_first()
                if global_first
                else Suppression.client_id.nulls_last(),
                Suppression.id,
            )
            .limit(1)
        ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{raw!r} is not suppressed")
    return row
