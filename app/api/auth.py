"""API keys: random, shown once, stored as SHA-256; `Authorization: Bearer <key>`.

A key belongs to one client and acts for it; an admin key may act for another client
named by the `X-Sendfleet-Client: <id>` header. The request's client is `g.client_id`."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from flask import g, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Forbidden, NotFound, Unauthorized
from app.extensions import db
from app.models import ApiKey, Client

KEY_PREFIX = "sf_"
# last_used_at is bookkeeping, not an audit log: write it at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
CLIENT_HEADER = "X-Sendfleet-Client"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, name: str, *, client_id: int | None = None, is_admin: bool = False
) -> tuple[ApiKey, str]:
    """Returns the stored row and the plaintext key, which is never stored. Without
    `client_id` the key is the default client's."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:10], is_admin=is_admin)
    if client_id is not None:
        row.client_id = client_id
    session.add(row)
    session.flush()
    return row, key


def authenticate_request() -> None:
    """before_request hook of every /api/v1 blueprint except health and the OpenAPI document."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    key_hash = hash_key(key.strip())
    row = db.session.execute(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        db.session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        db.session.commit()
    g.api_key_id = row.id
    g.api_key_is_admin = row.is_admin
    g.client_id = _acting_client(row)


def _acting_client(row: ApiKey) -> int:
    raw = request.headers.get(CLIENT_HEADER)
    if raw is None:
        return row.client_id
    if not row.is_admin:
        raise Forbidden(
            f"{CLIENT_HEADER}: only an admin key may act for another client", field=CLIENT_HEADER
        )
    value = raw.strip()
    # Bounded so a huge number is "no such client", not a database error.
    client_id = int(value) if value.isdecimal() and len(value) <= 9 else None
    if client_id is None or db.session.get(Client, client_id) is None:
        raise NotFound(f"{CLIENT_HEADER}: no client {raw!r}", field=CLIENT_HEADER)
    return client_id
