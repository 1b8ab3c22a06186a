"""Clients: the default client, creating, listing and changing clients, pausing and resuming
them, and user memberships (which clients a UI user sees, and the role there)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from app.models import Campaign, Client, ClientStatus, Event, EventType, User, UserClient, UserRole
from app.models.clients import DEFAULT_CLIENT_ID

DEFAULT_PAUSE_REASON = "paused by an operator"


def default_client_id(session: Session) -> int:
    """The first client (migration 0003 made it): the owner when none is named."""
    client_id = session.execute(select(DEFAULT_CLIENT_ID)).scalar_one_or_none()
    if client_id is None:
        raise NotFound("no client exists; run `flask --app app db upgrade`")
    return int(client_id)


def owner(client_id: int | None) -> dict[str, Any]:
    """Constructor keywords of an owned row: its client, or the model's default client."""
    return {} if client_id is None else {"client_id": client_id}


def client_not_found(client_id: int) -> NotFound:
    """The one answer for a client that does not exist or that the caller may not see: the
    two must read the same, or the difference tells which ids exist."""
    return NotFound(f"no client {client_id}")


def get_client(session: Session, client_id: int) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise client_not_found(client_id)
    return client


def create_client(session: Session, name: str, *, telegram_chat_id: str | None = None) -> Client:
    client = Client(name=_name(name), telegram_chat_id=telegram_chat_id)
    session.add(client)
    _flush_unique_name(session, client.name)
    return client


def list_clients(session: Session) -> list[Client]:
    return list(session.execute(select(Client).order_by(Client.id)).scalars())


def update_client(session: Session, client_id: int, data: Mapping[str, Any]) -> Client:
    """`data` as ClientUpdateSchema loads it: only the fields given change; a null
    telegram_chat_id sends the client's alerts to TELEGRAM_CHAT_ID again."""
    client = session.get(Client, client_id, with_for_update=True, populate_existing=True)
    if client is None:
        raise client_not_found(client_id)
    if "name" in data:
        client.name = _name(data["name"])
    if "telegram_chat_id" in data:
        client.telegram_chat_id = data["telegram_chat_id"]
    _flush_unique_name(session, client.name)
    session.refresh(client)  # updated_at, set by the database
    return client


def pause_client(
    session: Session,
    client_id: int,
    *,
    reason: str | None = None,
    source: str = "api",
    api_key_id: int | None = None,
) -> Client:
    """active -> paused, with the reason shown to operators; 409 when already paused."""
    reason = reason or DEFAULT_PAUSE_REASON
    _transition(
        session,
        client_id,
        expected=ClientStatus.ACTIVE,
        values={"status": ClientStatus.PAUSED.value, "paused_reason": reason},
    )
    data = _event_data(source, api_key_id, reason=reason)
    session.add(Event(type=EventType.CLIENT_PAUSED.value, client_id=client_id, data=data))
    return _reloaded(session, client_id)


def resume_client(
    session: Session, client_id: int, *, source: str = "api", api_key_id: int | None = None
) -> Client:
    """paused -> active, the reason cleared; 409 when already active."""
    _transition(
        session,
        client_id,
        expected=ClientStatus.PAUSED,
        values={"status": ClientStatus.ACTIVE.value, "paused_reason": None},
    )
    data = _event_data(source, api_key_id)
    session.add(Event(type=EventType.CLIENT_RESUMED.value, client_id=client_id, data=data))
    return _reloaded(session, client_id)


def add_member(
    session: Session, user: User, client_id: int | None, role: UserRole = UserRole.MEMBER
) -> UserClient:
    """Makes `user` a member of the client, the default one when not given."""
    session.flush()  # the user's id
    client_id = get_client(session, client_id).id if client_id else default_client_id(session)
    membership = UserClient(user_id=user.id, client_id=client_id, role=role.value)
    session.add(membership)
    session.flush()
    return membership


def visible_clients(session: Session, user: User) -> list[Client]:
    """The clients a UI user may switch to: those they are a member of, or every client
    for a user who is an admin of any."""
    is_admin = exists().where(
        UserClient.user_id == user.id, UserClient.role == UserRole.ADMIN.value
    )
    member_of = select(UserClient.client_id).where(UserClient.user_id == user.id)
    rows = session.execute(
        select(Client).where(or_(is_admin, Client.id.in_(member_of))).order_by(Client.id)
    )
    return list(rows.scalars())


def role_in(session: Session, user: User, client_id: int) -> UserRole | None:
    """The user's role in the client: admin in every client when admin in any, their
    membership's role otherwise, None when they are not a member (or there is no such
    client)."""
    roles = set(
        session.execute(
            select(UserClient.role).where(
                UserClient.user_id == user.id,
                or_(UserClient.client_id == client_id, UserClient.role == UserRole.ADMIN.value),
            )
        ).scalars()
    )
    if UserRole.ADMIN.value in roles:
        return UserRole.ADMIN if session.get(Client, client_id) is not None else None
    # A membership row names an existing client (foreign key, ON DELETE CASCADE).
    return UserRole.MEMBER if roles else None


def _name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank", field="name")
    return name


def _flush_unique_name(session: Session, name: str) -> None:
    # The unique constraint decides (no check-then-insert race); the savepoint keeps the
    # session usable, the caller's unit of work rolls the rest back when Conflict propagates.
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a client named {name!r} exists", field="name") from None


def _transition(
    session: Session, client_id: int, *, expected: ClientStatus, values: dict[str, Any]
) -> None:
    # One conditional UPDATE: two operators (or a guard) pausing at once change the row
    # once, and the second hears 409 instead of writing a second event.
    changed = session.execute(
        update(Client)
        .where(Client.id == client_id, Client.status == expected.value)
        .values(**values, updated_at=func.now())
        .returning(Client.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        status = session.execute(
            select(Client.status).where(Client.id == client_id)
        ).scalar_one_or_none()
        if status is None:
            raise client_not_found(client_id)
        raise InvalidTransition(f"client {client_id} is already {status}")


def _reloaded(session: Session, client_id: int) -> Client:
    client = session.get(Client, client_id, populate_existing=True)
    if client is None:
        raise client_not_found(client_id)
    return client


def _event_data(source: str, api_key_id: int | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"source": source, **extra}
    if api_key_id is not None:
        data["api_key_id"] = api_key_id
    return data


def clients_of_campaigns(session: Session, campaign_ids: Collection[int]) -> dict[int, int]:
    """Each campaign's client, for the campaigns that exist."""
    if not campaign_ids:
        return {}
    rows = session.execute(
        select(Campaign.id, Campaign.client_id).where(Campaign.id.in_(list(campaign_ids)))
    )
    return {campaign_id: client_id for campaign_id, client_id in rows}
