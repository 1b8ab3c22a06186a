from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, Boolean, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class BlacklistCheck(Base):
    __tablename__ = "blacklist_checks"
    __table_args__ = (Index("ix_blacklist_checks_target_checked", "target", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(255))
    target_kind: Mapped[str] = mapped_column(String(8))  # "ip" or "domain"
    listed: Mapped[bool] = mapped_column(Boolean)
    lists_hit: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    checked_at: Mapped[datetime] = created_at_column()
