"""Unsubscribe: signed tokens in every message, and the suppression they lead to.

A token signs the recipient id; a forged or altered token does not verify and changes nothing.
Unsubscribing suppresses the address for every campaign at once (DESIGN "Compliance")."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

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

SALT = "sendfleet.unsubscribe.v1"


class InvalidToken(Exception):
    pass


class UnsubscribeTokens:
    def __init__(self, secret_key: str, public_base_url: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=SALT)
        self._base = public_base_url.rstrip("/")

    def token(self, recipient_id: int) -> str:
        return self._serializer.dumps(recipient_id)

    def url(self, recipient_id: int) -> str:
        return f"{self._base}/u/{self.token(recipient_id)}"

    def recipient_id(self, token: str) -> int:
        try:
            value = self._serializer.loads(token)
        except BadSignature as exc:
            raise InvalidToken(token) from exc
        if not isinstance(value, int):
            raise InvalidToken(token)
        return value


@dataclass(frozen=True)
class Subscriber:
    recipient_id: int
    campaign_id: int
    email: str


def find_subscriber(session: Session, recipient_id: int) -> Subscriber | None:
    row = session.execute(
        select(Recipient.id, Recipient.campaign_id, Recipient.email).where(
            Recipient.id == recipient_id
        )
    ).first()
    return Subscriber(*row) if row else None


def is_unsubscribed(session: Session, email: str) -> bool:
    return (
        session.execute(select(Suppression.id).where(Suppression.value == email)).first()
        is not None
    )


def unsubscribe(session: Session, subscriber: Subscriber, *, source: str) -> bool:
    """Suppresses the address everywhere; idempotent. Returns False if it already was."""
    inserted = session.execute(
        pg_insert(Suppression)
        .values(
            kind=SuppressionKind.EMAIL.value,
            value=subscriber.email,
            reason=SuppressionReason.UNSUBSCRIBED.value,
            source=source,
        )
        .on_conflict_do_nothing(index_elements=["value"])
        .returning(Suppression.id)
    ).first()
    # Rows still waiting in any campaign will not be sent; the send path re-checks as well.
    session.execute(
        update(Recipient)
        .where(
            Recipient.campaign_id.in_(
                select(Campaign.id).where(Campaign.status.in_(OPEN_STATUSES))
            ),
            Recipient.email == subscriber.email,
            Recipient.status.in_(DUE_STATUSES),
        )
        .values(status=RecipientStatus.UNSUBSCRIBED.value)
    )
    if inserted is not None:
        session.execute(
            insert(Event).values(
                type=EventType.UNSUBSCRIBED.value,
                campaign_id=subscriber.campaign_id,
                recipient_id=subscriber.recipient_id,
                data={"source": source},
            )
        )
    return inserted is not None
