"""Clients: the default client, creating and listing clients, and user memberships."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.models import Client, User, UserClient, UserRole
from app.models.clients import DEFAULT_CLIENT_ID


def default_client_id(session: Session) -> int:
    """The first client (migration 0003 made it): the owner when none is named."""
    client_id = session.execute(select(DEFAULT_CLIENT_ID)).scalar_one_or_none()
    if client_id is None:
        raise NotFound("no client exists; run `flask --app app db upgrade`")
    return int(client_id)


def owner(client_id: int | None) -> dict[str, Any]:
    """Constructor keywords of an owned row: its client, or the model's default client."""
    return {} if client_id is None else {"client_id": client_id}


def get_client(session: Session, client_id: int) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound(f"no client {client_id}")
    return client


def create_client(session: Session, name: str) -> Client:
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be blank", field="name")
    client = Client(name=name)
    session.add(client)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a client named {name!r} exists", field="name") from None
    return client


def list_clients(session: Session) -> list[Client]:
    return list(session.execute(select(Client).order_by(Client.id)).scalars())


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
