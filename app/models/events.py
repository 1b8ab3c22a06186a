from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class EventType(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"
    REQUEUED = "requeued"
    UNKNOWN = "unknown"
    ACCOUNT_PAUSED = "account_paused"
    ACCOUNT_RESUMED = "account_resumed"
    ACCOUNT_DISABLED = "account_disabled"
    CAMPAIGN_STARTED = "campaign_started"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_RESUMED = "campaign_resumed"
    CAMPAIGN_CANCELLED = "campaign_cancelled"
    CAMPAIGN_COMPLETED = "campaign_completed"
    CLIENT_PAUSED = "client_paused"
    CLIENT_RESUMED = "client_resumed"
    IMPORTED = "imported"
    SUPPRESSION_DELETED = "suppression_deleted"


class Event(Base):
    """Append-only log. Rows are never updated. No foreign keys: an event is written for
    nearly every send, a key check would lock the campaign and account rows against every
    other worker, and history must outlive a deleted campaign or account."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_campaign_created", "campaign_id", "created_at"),
        Index("ix_events_recipient", "recipient_id"),
        Index("ix_events_account_created", "account_id", "created_at"),
        Index("ix_events_client_created", "client_id", "created_at"),
        # The last day's sends, read when the limiter's windows are rebuilt (app.services.sends).
        Index("ix_events_created_brin", "created_at", postgresql_using="brin"),
        # An account's last resume: where the rate guards' window starts (migration 0010).
        Index(
            "ix_events_account_resumed",
            "account_id",
            "created_at",
            postgresql_where=text("type = 'account_resumed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    # Plain integer like the other ids here; NULL where the writer does not know it yet.
    client_id: Mapped[int | None] = mapped_column(Integer)
    campaign_id: Mapped[int | None] = mapped_column(Integer)
    recipient_id: Mapped[int | None] = mapped_column(BigInteger)
    account_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = created_at_column()
