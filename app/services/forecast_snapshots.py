"""The forecast a campaign was started with, kept to compare with what it then sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import ForecastSnapshot


def keep(session: Session, campaign_id: int, forecast: dict[str, Any]) -> None:
    """Replaces the campaign's snapshot with `forecast` (campaign_forecast's answer)."""
    values = {
        "campaign_id": campaign_id,
        "finish_date": forecast["finish_date"],
        "summary": forecast["summary"],
        "days": [{"date": d["date"].isoformat(), "sends": d["sends"]} for d in forecast["days"]],
    }
    stmt = insert(ForecastSnapshot).values(**values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ForecastSnapshot.campaign_id],
            set_={
                **{k: stmt.excluded[k] for k in ("finish_date", "summary", "days")},
                "made_at": stmt.excluded.made_at,
            },
        )
    )


def latest(session: Session, campaign_id: int) -> ForecastSnapshot | None:
    return session.execute(
        select(ForecastSnapshot).where(ForecastSnapshot.campaign_id == campaign_id)
    ).scalar_one_or_none()
