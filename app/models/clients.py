from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, created_at_column, updated_at_column


class ClientStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class UserRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class Client(Base):
    """One brand or customer of the installation; its senders, campaigns, unsubscribes,
    keys and figures stay apart from every other client's."""

    __tablename__ = "clients"
    __table_args__ = (CheckConstraint("status IN ('active', 'paused')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default=ClientStatus.ACTIVE.value)
    # Why a paused client is paused (an operator, a guard); cleared on resume.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Alerts about this client go here; TELEGRAM_CHAT_ID when unset.
    telegram_chat_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class UserClient(Base):
    """A UI user's membership of a client, with a role there."""

    __tablename__ = "user_clients"
    __table_args__ = (CheckConstraint("role IN ('admin', 'member')", name="role"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), server_default=UserRole.MEMBER.value)


# The default client is the first one: migration 0003 creates it (named DEFAULT_CLIENT_NAME)
# and gives it every row that existed before clients did.
DEFAULT_CLIENT_ID = select(Client.id).order_by(Client.id).limit(1).scalar_subquery()


def client_id_column(*, nullable: bool = False) -> Mapped[int]:
    """`client_id` of an owned row. Until every insert names its client (the API scoping
    work), a row inserted without one belongs to the default client."""
    return mapped_column(
        ForeignKey("clients.id"), index=True, nullable=nullable, default=DEFAULT_CLIENT_ID
    )
