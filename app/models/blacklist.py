from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ARRAY, Boolean, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class BlacklistStatus(StrEnum):
    CLEAN = "clean"
    LISTED = "listed"
    # Some list did not answer (timeout, refused, SERVFAIL) or answered with an error code
    # (Spamhaus 127.255.255.x): nothing is known, so this is never taken for "clean".
    UNKNOWN = "unknown"


class BlacklistCheck(Base):
    """One check of one target (an IP or a sending domain) against the configured lists.
    Targets are global: a client sees those of its own accounts (app.services.blacklist)."""

    __tablename__ = "blacklist_checks"
    __table_args__ = (Index("ix_blacklist_checks_target_checked", "target", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(255))
    target_kind: Mapped[str] = mapped_column(String(8))  # "ip" or "domain"
    listed: Mapped[bool] = mapped_column(Boolean)
    lists_hit: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(String(16), server_default=BlacklistStatus.CLEAN.value)
    note: Mapped[str | None] = mapped_column(Text)
    # Per list: {"status": clean|listed|unknown, "answers": [...], "error": "..."}.
    list_results: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    checked_at: Mapped[datetime] = created_at_column()
