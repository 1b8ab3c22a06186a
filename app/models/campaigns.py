from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ARRAY, CheckConstraint, DateTime, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column
from app.models.clients import client_id_column


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# Campaigns whose waiting recipients may still be sent (suppressions reach into these).
OPEN_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED)

# Allowed state changes: action -> (from states, to state).
TRANSITIONS: dict[str, tuple[frozenset[CampaignStatus], CampaignStatus]] = {
    "start": (frozenset({CampaignStatus.DRAFT}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "cancel": (
        frozenset({CampaignStatus.DRAFT, CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.CANCELLED,
    ),
}


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint("priority BETWEEN 1 AND 100", name="priority"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = client_id_column()
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(String(200))
    account_tags: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    account_ids: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    # {"timezone": "Europe/Berlin", "days": [0..6, Monday=0], "start_hour": 9, "end_hour": 17}
    window: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    # Its share of the client's capacity against the client's other running campaigns.
    priority: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    status: Mapped[str] = mapped_column(
        String(16), server_default=CampaignStatus.DRAFT.value, index=True
    )
    # Every field name any recipient carries, so templates can be checked at creation.
    # Why a guard (or an operator) paused it, shown by the API.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Who paused it (operator, guard ...) and the figures that decided it.
    paused_by: Mapped[str | None] = mapped_column(String(32))
    pause_details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    field_names: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")

    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
