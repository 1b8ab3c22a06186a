from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column


class RecipientStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    UNSUBSCRIBED = "unsubscribed"
    UNKNOWN = "unknown"


# Waiting for the dispatcher (a deferred row is due again at next_attempt_at).
DUE_STATUSES = (RecipientStatus.PENDING, RecipientStatus.DEFERRED)
# Nothing more will happen to these without an operator.
FINAL_STATUSES = frozenset(
    {
        RecipientStatus.SENT,
        RecipientStatus.BOUNCED,
        RecipientStatus.FAILED,
        RecipientStatus.SUPPRESSED,
        RecipientStatus.UNSUBSCRIBED,
        RecipientStatus.UNKNOWN,
    }
)


class Recipient(Base):
    """The hot table: one row per (campaign, email); every status change is a CAS update."""

    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "email", name="uq_recipients_campaign_email"),
        # A campaign's rows in a given status other than pending (listings filtered by a
        # rare status of a large campaign); counts come from recipient_counts. Pending rows
        # stay out, so an import does not pay for them (migration 0015).
        Index(
            "ix_recipients_campaign_status",
            "campaign_id",
            "status",
            postgresql_where=text("status <> 'pending'"),
        ),
        # The dispatcher's scan: due rows in its claim order (next_attempt_at NULLS FIRST,
        # id), only where work is waiting (migration 0014).
        Index(
            "ix_recipients_due",
            "campaign_id",
            text("next_attempt_at NULLS FIRST"),
            "id",
            postgresql_where=text("status IN ('pending', 'deferred')"),
        ),
        # Recovery's scan of in-flight rows.
        Index(
            "ix_recipients_in_flight",
            "status",
            "updated_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        # Matching bounces and feedback reports to a send; only sends have one.
        Index(
            "ix_recipients_message_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
        # No index on email alone: lookups by address go through the open campaigns and
        # uq_recipients_campaign_email, which keeps imports and status changes cheaper.
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # campaign_id and account_id reference campaigns (ON DELETE CASCADE) and accounts (ON
    # DELETE SET NULL) through per-statement triggers, not declarative keys (migration 0016).
    campaign_id: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(255))
    fields: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(16), server_default=RecipientStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Account-level refusals that handed this row back to the pool (bounded; never reset).
    handbacks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The send process holding a queued/sending row; recovery checks its heartbeat.
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    account_id: Mapped[int | None] = mapped_column(Integer)
    # The reservation token written into the limiter windows, for release.
    reservation: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_smtp_code: Mapped[int | None] = mapped_column(Integer)
    last_smtp_text: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When queued: the moment its limiter reservation was placed at; it goes then, not before.
    slot_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
