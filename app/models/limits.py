from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column
from app.models.clients import client_id_column

SCOPES = ("system", "account", "sending_domain", "recipient_domain")


class LimitOverride(Base):
    """Overrides the settings' default limits for one scope and key (system uses key '*')."""

    __tablename__ = "limits"
    __table_args__ = (
        UniqueConstraint("scope", "key", name="uq_limits_scope_key"),
        CheckConstraint(
            "scope IN ('system', 'account', 'sending_domain', 'recipient_domain')", name="scope"
        ),
        CheckConstraint("per_minute IS NULL OR per_minute >= 0", name="per_minute"),
        CheckConstraint("per_day IS NULL OR per_day >= 0", name="per_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = client_id_column()
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(320))
    per_minute: Mapped[int | None] = mapped_column(Integer)
    per_day: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
