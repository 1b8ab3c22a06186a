"""Unsubscribe: signed tokens in every message, and the suppression they lead to.

A token signs the recipient id; a forged or altered token does not verify and changes nothing.
Unsubscribing suppresses the address for every campaign of the client that sent the message
at once (DESIGN "Compliance"): the person opted out of that sender, not of every brand the
installation serves. Bounces and complaints are global (app.services.suppressions)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, Signer, URLSafeSerializer
from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.models import (
    DUE_STATUSES,
    Campaign,
    Event,
    EventType,
    Recipient,
    RecipientStatus,
    Suppression,
    SuppressionKind,
    SuppressionReason,
)
from app.services.suppressions import suppress_waiting_recipients, visible_to

SALT = "sendfleet.unsubscribe.v1"


class InvalidToken(Exception):
    pass


class _Serializer(URLSafeSerializer):
    """The same tokens as URLSafeSerializer, with one signer per salt kept instead of a new
    one per token: each new signer derived its HMAC key again (a third of building a
    message, in the send path's profile)."""

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signers: dict[str | bytes | None, Signer] = self.__dict__.setdefault("_signers", {})
        if salt not in signers:
            signers[salt] = _KeyedSigner(
                self.secret_keys, salt=self.salt if salt is None else salt, **self.signer_kwargs
            )
        return signers[salt]


class _KeyedSigner(Signer):
    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        keys: dict[str | bytes | None, bytes] = self.__dict__.setdefault("_derived", {})
        if secret_key not in keys:
            keys[secret_key] = super().derive_key(secret_key)
        return keys[secret_key]


class UnsubscribeTokens:
    def __init__(self, secret_key: str, public_base_url: str) -> None:
        self._serializer = _Serializer(secret_key, salt=SALT)
        self._base = public_base_url.rstrip("/")

    @staticmethod
    @lru_cache(maxsize=8)
    def of(secret_key: str, public_base_url: str) -> UnsubscribeTokens:
        """One instance per secret and address, for the send path's every message."""
        return UnsubscribeTokens(secret_key, public_base_url)

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
    status: str
    client_id: int


def find_subscriber(session: Session, recipient_id: int) -> Subscriber | None:
    row = session.execute(
        select(
            Recipient.id,
            Recipient.campaign_id,
            Recipient.email,
            Recipient.status,
            Campaign.client_id,
        )
        .join(Campaign, Campaign.id == Recipient.campaign_id)
        .where(Recipient.id == recipient_id)
    ).first()
    return Subscriber(*row) if row else None


def is_unsubscribed(session: Session, subscriber: Subscriber) -> bool:
    """Whether the subscriber's client no longer mails the address (its own unsubscribe,
    or a global suppression)."""
    found = session.execute(
        select(Suppression.id).where(
            Suppression.value == subscriber.email, visible_to(subscriber.client_id)
        )
    ).first()
    return found is not None


def unsubscribe(session: Session, subscriber: Subscriber, *, source: str) -> bool:
    """Suppresses the address for the subscriber's client; idempotent. Returns False if it
    already was."""
    inserted = session.execute(
        pg_insert(Suppression)
        .values(
            kind=SuppressionKind.EMAIL.value,
            value=subscriber.email,
            reason=SuppressionReason.UNSUBSCRIBED.value,
            source=source,
            client_id=subscriber.client_id,
        )
        .on_conflict_do_nothing(index_elements=["client_id", "value"])
        .returning(Suppression.id)
    ).first()
    # Rows still waiting in the client's campaigns will not be sent; the send path
    # re-checks as well.
    suppress_waiting_recipients(
        session,
        SuppressionKind.EMAIL,
        subscriber.email,
        source=source,
        status=RecipientStatus.UNSUBSCRIBED,
        event=EventType.UNSUBSCRIBED,
        client_id=subscriber.client_id,
    )
    # A clicked row that was still waiting got its event from the move above.
    if inserted is not None and subscriber.status not in DUE_STATUSES:
        session.execute(
            insert(Event).values(
                type=EventType.UNSUBSCRIBED.value,
                campaign_id=subscriber.campaign_id,
                recipient_id=subscriber.recipient_id,
                data={"source": source},
            )
        )
    return inserted is not None
