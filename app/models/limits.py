from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column

SCOPES = ("system", "account", "sending_domain", "recipient_domain", "client")


class LimitOverride(Base):
    """Overrides the settings' default limits for one scope and key (system uses key '*', a
    client's own caps the `client` scope keyed by its id)."""

    __tablename__ = "limits"
    __table_args__ = (
        # One row per scope and key within a client; the system row has no client.
        UniqueConstraint(
            "scope",
            "key",
            "client_id",
            name="uq_limits_scope_key_client",
            postgresql_nulls_not_distinct=True,
        ),
        CheckConstraint(
            "scope IN ('system', 'account', 'sending_domain', 'recipient_domain', 'client')",
            name="scope",
        ),
        CheckConstraint("(scope = 'system') = (client_id IS NULL)", name="client_scoped"),
        CheckConstraint("per_minute IS NULL OR per_minute >= 0", name="per_minute"),
        CheckConstraint("per_day IS NULL OR per_day >= 0", name="per_day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL for the system scope (the installation's); else the client whose limit it is.
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id"), index=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(320))
    per_minute: Mapped[int | None] = mapped_column(Integer)
    per_day: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
