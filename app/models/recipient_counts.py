from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class RecipientCount(Base):
    """Recipients per campaign and status, written only by the statement triggers on
    recipients (migration 0013): a campaign's count of a status is the sum over its slots.
    A slot is the backend that wrote it (0: the backfill and compacted slots), so writers
    running at once never share a row. No foreign key: its check would take a key-share
    lock on the campaign's row, which waits for a dispatcher or an import holding it."""

    __tablename__ = "recipient_counts"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)
