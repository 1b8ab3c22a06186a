from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class AuthVerdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    # The resolver did not answer: neither pass nor fail.
    UNKNOWN = "unknown"


class SenderAuthCheck(Base):
    """One run of the sender-authentication check of one sending domain. `ptr` is NULL
    when no own IP sends for the domain. `results` holds, per item, the verdict, what was
    found, the problem and the fix in plain words (the record to publish)."""

    __tablename__ = "sender_auth_checks"
    __table_args__ = (Index("ix_sender_auth_checks_domain_checked", "domain", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    spf: Mapped[str] = mapped_column(String(8))
    dkim: Mapped[str] = mapped_column(String(8))
    dmarc: Mapped[str] = mapped_column(String(8))
    mx: Mapped[str] = mapped_column(String(8))
    ptr: Mapped[str | None] = mapped_column(String(8))
    results: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    checked_at: Mapped[datetime] = created_at_column()
