from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column


class ForecastSnapshot(Base):
    """The forecast a campaign was started (or last resumed) with, so its page can set what
    the schedule said against what was sent. One per campaign: the latest start wins."""

    __tablename__ = "forecast_snapshots"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    made_at: Mapped[datetime] = created_at_column()
    finish_date: Mapped[date | None] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text)
    # [{"date": "YYYY-MM-DD", "sends": n}, ...] as the forecast planned them.
    days: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
