from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class RampOutcome(StrEnum):
    ADVANCED = "advanced"
    HELD = "held"


class WarmupDay(Base):
    """One judged day of an account's warm-up: the cap in force that day, what it sent and
    bounced, and whether the ramp advanced or held afterwards (and why). One row per
    account and day: the daily ramp inserts it first and advances only when it inserted."""

    __tablename__ = "warmup_days"
    __table_args__ = (UniqueConstraint("account_id", "day", name="uq_warmup_days_account_day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)  # the local day (WARMUP_TIMEZONE) judged
    warmup_day: Mapped[int] = mapped_column(Integer)  # the ramp's day number during it
    cap: Mapped[int] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer)
    bounced: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = created_at_column()


class HealthCheck(Base):
    """One SMTP health check of one account (connect, EHLO, STARTTLS, AUTH, NOOP, QUIT);
    the transcript has every secret masked. Pruned after HEALTH_HISTORY_DAYS."""

    __tablename__ = "health_checks"
    __table_args__ = (
        Index("ix_health_checks_account_checked", "account_id", "checked_at"),
        Index("ix_health_checks_checked_at", "checked_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    ok: Mapped[bool] = mapped_column(Boolean)
    stage: Mapped[str] = mapped_column(String(16))  # where it failed, or "quit" when it passed
    error: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    duration_ms: Mapped[int] = mapped_column(Integer)
    checked_at: Mapped[datetime] = created_at_column()
