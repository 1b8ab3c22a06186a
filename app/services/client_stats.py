"""One client's figures (GET /clients/<id>/stats): its recipients and campaigns by status,
and the outcomes of a range of UTC days from the events log, per day and per account, with
their rates. Each figure is one GROUP BY over the client's own rows only."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import (
    Account,
    Campaign,
    CampaignStatus,
    Event,
    EventType,
)
from app.services import recipient_counts
from app.services.clients import get_client

DAYS_DEFAULT = 30
DAYS_MAX = 366
# What per_day (and totals) count, and the subset counted per account.
DAY_TYPES = (
    EventType.SENT,
    EventType.BOUNCED,
    EventType.DEFERRED,
    EventType.FAILED,
    EventType.UNSUBSCRIBED,
    EventType.COMPLAINED,
)
ACCOUNT_TYPES = (EventType.SENT, EventType.BOUNCED, EventType.FAILED)


def client_stats(
    session: Session, client_id: int, *, days: int = DAYS_DEFAULT, now: datetime | None = None
) -> dict[str, Any]:
    """The figures of the `days` UTC days ending with today (today included), as
    ClientStatsSchema shows them. Recipient and campaign counts are of all time."""
    get_client(session, client_id)
    if not 1 <= days <= DAYS_MAX:
        raise InvalidInput(f"days: must be between 1 and {DAYS_MAX}", field="days")
    first = (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=days - 1)
    since = datetime.combine(first, time(), UTC)
    until = since + timedelta(days=days)
    per_day = _per_day(session, client_id, since, until, first, days)
    totals = {t.value: sum(day[t.value] for day in per_day) for t in DAY_TYPES}
    return {
        "client_id": client_id,
        "days": days,
        "since": since,
        "until": until,
        "counts": _recipient_counts(session, client_id),
        "campaigns": _campaign_counts(session, client_id),
        "per_day": per_day,
        "per_account": _per_account(session, client_id, since, until),
        "totals": totals,
        "rates": rates(totals),
    }


def rates(totals: dict[str, int]) -> dict[str, float | None]:
    """Bounces among the messages the servers answered for good, unsubscribes and
    complaints per message sent; None where nothing was there to divide by."""
    sent, bounced = totals[EventType.SENT.value], totals[EventType.BOUNCED.value]
    return {
        "bounce_rate": _ratio(bounced, sent + bounced),
        "unsubscribe_rate": _ratio(totals[EventType.UNSUBSCRIBED.value], sent),
        "complaint_rate": _ratio(totals[EventType.COMPLAINED.value], sent),
    }


def day_counts_query(client_id: int, since: datetime, until: datetime) -> Select[Any]:
    """Events of the client by UTC day and type. The WHERE is client_id and a created_at
    range, so ix_events_client_created serves it; the day is computed only for the rows
    it finds."""
    day = func.date(func.timezone(literal_column("'UTC'"), Event.created_at))
    return (
        select(day, Event.type, func.count())
        .where(
            Event.client_id == client_id,
            Event.created_at >= since,
            Event.created_at < until,
            Event.type.in_([t.value for t in DAY_TYPES]),
        )
        .group_by(day, Event.type)
    )


def _per_day(
    session: Session, client_id: int, since: datetime, until: datetime, first: date, days: int
) -> list[dict[str, Any]]:
    zero = dict.fromkeys((t.value for t in DAY_TYPES), 0)
    by_day = {first + timedelta(days=i): dict(zero) for i in range(days)}
    for day, type_, n in session.execute(day_counts_query(client_id, since, until)):
        by_day[day][type_] = n
    return [{"date": day, **counts} for day, counts in by_day.items()]


def _per_account(
    session: Session, client_id: int, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    # Events are matched on the client too: a send for another client's campaign through
    # this account is that client's figure, never this one's.
    counted = [
        func.count(Event.id).filter(Event.type == t.value).label(t.value) for t in ACCOUNT_TYPES
    ]
    rows = session.execute(
        select(Account.id, Account.name, *counted)
        .outerjoin(
            Event,
            and_(
                Event.account_id == Account.id,
                Event.client_id == client_id,
                Event.created_at >= since,
                Event.created_at < until,
                Event.type.in_([t.value for t in ACCOUNT_TYPES]),
            ),
        )
        .where(Account.client_id == client_id)
        .group_by(Account.id)
        .order_by(Account.id)
    )
    return [dict(row._mapping) for row in rows]


def _recipient_counts(session: Session, client_id: int) -> dict[str, int]:
    return recipient_counts.client_counts(session, client_id)


def _campaign_counts(session: Session, client_id: int) -> dict[str, int]:
    counts = dict.fromkeys((s.value for s in CampaignStatus), 0)
    rows = session.execute(
        select(Campaign.status, func.count())
        .where(Campaign.client_id == client_id)
        .group_by(Campaign.status)
    )
    for status, n in rows:
        counts[status] = n
    return counts


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None
