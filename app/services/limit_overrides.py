"""Reading and changing the limits in force for one client: overrides per (scope, key)
and what is used now. The system scope and a client's own caps (the `client` scope) are
the installation's to set: admin keys only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.errors import Forbidden, InvalidInput, NotFound
from app.models import SCOPES, Account, Client, LimitOverride
from app.services.limits import (
    DAY,
    MINUTE,
    SYSTEM_KEY,
    Limit,
    LimitTable,
    load_limits,
    recipient_domain_key,
)
from app.settings import Settings
from rotator.limiter import Limiter, Scope, Window

KEY_MAX = 320  # limits.key is varchar(320)
ADMIN_SCOPES = ("system", "client")


def _check_key(scope: str, key: str, settings: Settings) -> str:
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}", field="scope")
    key = key.strip().lower()
    if not key or len(key) > KEY_MAX or "\x00" in key:
        raise InvalidInput(f"key must be 1 to {KEY_MAX} characters, without NUL", field="key")
    if scope == "system":
        if key not in ("*", "", "system"):
            raise InvalidInput("the system scope has the single key '*'", field="key")
        return SYSTEM_KEY
    if scope in ("account", "client") and not (key.isdecimal() and len(key) <= 9):
        raise InvalidInput(f"the key of the {scope} scope is the {scope}'s id", field="key")
    if scope == "sending_domain" and "@" in key:
        return _check_freemail_address(key, settings)
    if scope in ("sending_domain", "recipient_domain") and ("." not in key or "@" in key):
        raise InvalidInput("a domain key is a domain name like example.com", field="key")
    return key


def _check_freemail_address(key: str, settings: Settings) -> str:
    """A freemail account's own sending-domain window is keyed by its address."""
    local, _, domain = key.rpartition("@")
    if not local or "." not in domain or "@" in local:
        raise InvalidInput("a sending-domain key is a domain, or a freemail address", field="key")
    if not settings.is_freemail(domain):
        raise InvalidInput(
            f"{domain} is not a freemail domain: its accounts share the key {domain}",
            field="key",
        )
    return key


def _owner(session: Session, scope: str, key: str, client_id: int, is_admin: bool) -> int | None:
    """The client the override row belongs to (None: the system's), refusing what the key
    may not change: another client's account is 404 like a missing one."""
    if scope in ADMIN_SCOPES and not is_admin:
        raise Forbidden(
            f"the {scope} limits are the installation's: set them with an admin key", field="scope"
        )
    if scope == "system":
        return None
    if scope == "client":
        if session.get(Client, int(key)) is None:
            raise NotFound(f"no client {key}", field="key")
        return int(key)
    if scope == "account":
        account = session.get(Account, int(key))
        if account is None or account.client_id != client_id:
            raise NotFound(f"no account {key}", field="key")
    return client_id


def set_override(
    session: Session,
    settings: Settings,
    scope: str,
    key: str,
    per_minute: int | None,
    per_day: int | None,
    *,
    client_id: int,
    is_admin: bool = False,
) -> LimitOverride:
    key = _check_key(scope, key, settings)
    if per_minute is None and per_day is None:
        raise InvalidInput("give per_minute, per_day or both", field="per_minute")
    owner = _owner(session, scope, key, client_id, is_admin)
    statement = pg_insert(LimitOverride).values(
        scope=scope, key=key, client_id=owner, per_minute=per_minute, per_day=per_day
    )
    row = session.execute(
        statement.on_conflict_do_update(
            constraint="uq_limits_scope_key_client",
            set_={"per_minute": per_minute, "per_day": per_day},
        ).returning(LimitOverride)
    ).scalar_one()
    return row


def delete_override(
    session: Session,
    settings: Settings,
    scope: str,
    key: str,
    *,
    client_id: int,
    is_admin: bool = False,
) -> None:
    key = _check_key(scope, key, settings)
    owner = _owner(session, scope, key, client_id, is_admin)
    owned = LimitOverride.client_id.is_(None) if owner is None else LimitOverride.client_id == owner
    result = session.execute(
        delete(LimitOverride).where(LimitOverride.scope == scope, LimitOverride.key == key, owned)
    )
    if result.rowcount != 1:
        raise NotFound(f"no override for {scope}/{key}", field="key")


def effective_limits(
    session: Session, settings: Settings, limiter: Limiter, *, client_id: int
) -> dict[str, Any]:
    """The limits in force for one client (and the system's), the override behind each,
    and the use right now."""
    table = load_limits(session, settings)
    accounts = list(
        session.execute(
            select(Account).where(Account.client_id == client_id).order_by(Account.id)
        ).scalars()
    )
    own = {(s, k) for (s, k, c) in table.overrides if c == client_id}
    # (scope, key shown, limiter key, limit, client of the override)
    entries: list[tuple[str, str, str, Limit, int | None]] = [
        ("system", SYSTEM_KEY, SYSTEM_KEY, table.system(), None),
        ("client", str(client_id), str(client_id), table.client(client_id), client_id),
    ]
    entries += [("account", str(a.id), str(a.id), table.account(a), client_id) for a in accounts]
    # Keyed as the limiter keys them: an own domain's accounts share one entry, a freemail
    # account has its own (its address); overrides without accounts are listed too.
    sharing: dict[str, list[int]] = {}
    for a in accounts:
        sharing.setdefault(table.sending_domain_key(a), []).append(a.id)
    sharing.update({k: [] for (s, k) in own if s == "sending_domain" and k not in sharing})
    entries += [
        ("sending_domain", k, k, table.sending_domain(k, client_id), client_id)
        for k in sorted(sharing)
    ]
    entries += [
        (
            "recipient_domain",
            d,
            recipient_domain_key(client_id, d),
            table.recipient_domain(d, client_id),
            client_id,
        )
        for d in sorted(k for (s, k) in own if s == "recipient_domain")
    ]

    windows: list[Window] = []
    for scope, _, limiter_key, limit, _ in entries:
        windows.append(Window(Scope(scope), limiter_key, MINUTE, limit.per_minute or 0))
        windows.append(Window(Scope(scope), limiter_key, DAY, limit.per_day or 0))
    used = limiter.used(windows) if windows else []

    result: dict[str, Any] = {scope: [] for scope in SCOPES}
    for index, (scope, key, _, limit, owner) in enumerate(entries):
        override = table.overrides.get((scope, key, owner))
        result[scope].append(
            {
                "key": key,
                "per_minute": limit.per_minute,
                "per_day": limit.per_day,
                "override": (
                    {"per_minute": override.per_minute, "per_day": override.per_day}
                    if override
                    else None
                ),
                "used": {
                    "minute": used[2 * index] if limit.per_minute is not None else None,
                    "day": used[2 * index + 1] if limit.per_day is not None else None,
                },
            }
        )
        if scope == "sending_domain":
            result[scope][-1]["accounts"] = sharing[key]
    return {"scopes": result, "defaults": _defaults(table), "client_id": client_id}


def _defaults(table: LimitTable) -> dict[str, Any]:
    s = table.settings
    return {
        "system_per_minute": s.limit_system_per_minute,
        "account_per_minute": s.limit_account_per_minute,
        "sending_domain_per_day": s.limit_sending_domain_per_day,
        "recipient_domain_per_day": s.limit_recipient_domain_per_day,
        "freemail_per_day": s.limit_freemail_per_day,
        "client_per_minute": s.limit_client_per_minute,
        "client_per_day": s.limit_client_per_day,
        "freemail_domains": list(s.freemail_domains),
    }
