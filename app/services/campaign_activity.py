"""What a campaign has done, for its page: outcomes per hour or day from the events log,
the latest events, and its recipients filtered by status and searched by address. Scoped
like every campaign read: another client's campaign is "no campaign"."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Event, EventType, Recipient
from app.services import campaigns as campaign_service

OUTCOMES = (
    EventType.SENT.value,
    EventType.DEFERRED.value,
    EventType.BOUNCED.value,
    EventType.FAILED.value,
)
Bucket = Literal["hour", "day"]


def activity(
    session: Session, campaign_id: int, *, client_id: int | None, bucket: Bucket
) -> list[dict[str, Any]]:
    """[{at, sent, deferred, bounced, failed}] per UTC hour or day, oldest first."""
    campaign_service.get_campaign(session, campaign_id, client_id=client_id)
    at = func.date_trunc(bucket, func.timezone("UTC", Event.created_at)).label("at")
    rows = session.execute(
        select(at, Event.type, func.count())
        .where(Event.campaign_id == campaign_id, Event.type.in_(OUTCOMES))
        .group_by(at, Event.type)
        .order_by(at)
    )
    buckets: dict[datetime, dict[str, Any]] = {}
    for moment, kind, n in rows:
        entry = buckets.setdefault(moment, {"at": moment, **dict.fromkeys(OUTCOMES, 0)})
        entry[kind] = n
    return list(buckets.values())


def sent_per_day(session: Session, campaign_id: int, *, client_id: int | None) -> dict[date, int]:
    return {
        row["at"].date(): row[EventType.SENT.value]
        for row in activity(session, campaign_id, client_id=client_id, bucket="day")
    }


def latest_events(
    session: Session, campaign_id: int, *, client_id: int | None, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest events first, each with its recipient's address when it has one."""
    campaign_service.get_campaign(session, campaign_id, client_id=client_id)
    rows = session.execute(
        select(Event, Recipient.email)
        .outerjoin(Recipient, Recipient.id == Event.recipient_id)
        .where(Event.campaign_id == campaign_id)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return [
        {"created_at": e.created_at, "type": e.type, "data": e.data or {}, "email": email}
        for e, email in rows
    ]


def find_recipients(
    session: Session,
    campaign_id: int,
    *,
    client_id: int | None,
    status: str | None,
    search: str | None,
    after_id: int | None,
    limit: int,
) -> tuple[list[Recipient], int | None]:
    """A page by id; `search` matches part of the address (case-insensitive)."""
    campaign_service.get_campaign(session, campaign_id, client_id=client_id)
    stmt = select(Recipient).where(Recipient.campaign_id == campaign_id)
    if status:
        stmt = stmt.where(Recipient.status == status)
    if search:
        pattern = (
            "%"
            + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        stmt = stmt.where(Recipient.email.like(pattern, escape="\\"))
    if after_id is not None:
        stmt = stmt.where(Recipient.id > after_id)
    rows = list(session.execute(stmt.order_by(Recipient.id).limit(limit + 1)).scalars())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
