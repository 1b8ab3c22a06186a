from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column
from app.models.clients import client_id_column


class AccountStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


class Account(Base):
    """A sender account in the pool. The SMTP secret is Fernet-encrypted (app.crypto)."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("client_id", "name", name="uq_accounts_client_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = client_id_column()
    name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(320))
    sending_domain: Mapped[str] = mapped_column(String(255), index=True)
    from_name: Mapped[str | None] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    security: Mapped[str] = mapped_column(String(16))
    username: Mapped[str | None] = mapped_column(String(320))
    secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)

    daily_limit: Mapped[int] = mapped_column(Integer)
    per_minute_limit: Mapped[int | None] = mapped_column(Integer)
    warmup_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    warmup_day: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # The account's own ramp (NULL: WARMUP_START / WARMUP_STEP).
    warmup_start: Mapped[int | None] = mapped_column(Integer)
    warmup_step: Mapped[int | None] = mapped_column(Integer)
    warmup_held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    warmup_hold_reason: Mapped[str | None] = mapped_column(Text)

    status: Mapped[str] = mapped_column(String(16), server_default=AccountStatus.ACTIVE.value)
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Who paused it (operator, guard, blacklist, health, sender_auth, failures ...) and the
    # figures that decided it; NULL for pauses recorded before migration 0007.
    paused_by: Mapped[str | None] = mapped_column(String(32))
    pause_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The IP this account's mail leaves from, when the operator declares it (own relays):
    # the blacklist check watches it.
    sending_ip: Mapped[str | None] = mapped_column(String(45))
    # The DKIM selector this account's provider signs with, checked besides DKIM_SELECTORS.
    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_health_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_health_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_health_error: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))

    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    def cap_today(self, warmup_start: int, warmup_step: int) -> int:
        """The daily cap in force today: the provider/account cap, or less while warming up.
        The arguments are the settings' ramp; the account's own start and step win. Every
        caller (limiter windows, the API, the ramp) goes through app.services.warmup.cap_today."""
        if not self.warmup_enabled:
            return self.daily_limit
        return self.cap_on_day(self.warmup_day, warmup_start, warmup_step)

    def cap_on_day(self, day: int, warmup_start: int, warmup_step: int) -> int:
        start = warmup_start if self.warmup_start is None else self.warmup_start
        step = warmup_step if self.warmup_step is None else self.warmup_step
        return min(self.daily_limit, start + step * max(day - 1, 0))
