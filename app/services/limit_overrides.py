"""Reading and changing the limits in force: overrides per (scope, key) and what is used now."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import SCOPES, Account, LimitOverride
from app.services.limits import DAY, MINUTE, SYSTEM_KEY, Limit, LimitTable, load_limits
from app.settings import Settings
from rotator.limiter import Limiter, Scope, Window

KEY_MAX = 320  # limits.key is varchar(320)


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
    if scope == "account" and not key.isdigit():
        raise InvalidInput("an account key is the account id", field="key")
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


def set_override(
    session: Session,
    settings: Settings,
    scope: str,
    key: str,
    per_minute: int | None,
    per_day: int | None,
) -> LimitOverride:
    key = _check_key(scope, key, settings)
    if per_minute is None and per_day is None:
        raise InvalidInput("give per_minute, per_day or both", field="per_minute")
    if scope == "account" and session.get(Account, int(key)) is None:
        raise NotFound(f"no account {key}", field="key")
    statement = pg_insert(LimitOverride).values(
        scope=scope, key=key, per_minute=per_minute, per_day=per_day
    )
    row = session.execute(
        statement.on_conflict_do_update(
            constraint="uq_limits_scope_key",
            set_={"per_minute": per_minute, "per_day": per_day},
        ).returning(LimitOverride)
    ).scalar_one()
    return row


def delete_override(session: Session, settings: Settings, scope: str, key: str) -> None:
    key = _check_key(scope, key, settings)
    result = session.execute(
        delete(LimitOverride).where(LimitOverride.scope == scope, LimitOverride.key == key)
    )
    if result.rowcount != 1:
        raise NotFound(f"no override for {scope}/{key}", field="key")


def effective_limits(session: Session, settings: Settings, limiter: Limiter) -> dict[str, Any]:
    """Every scope's limits in force, the override behind them, and the use right now."""
    table = load_limits(session, settings)
    accounts = list(session.execute(select(Account).order_by(Account.id)).scalars())
    entries: list[tuple[str, str, Limit]] = [("system", SYSTEM_KEY, table.system())]
    entries += [("account", str(a.id), table.account(a)) for a in accounts]
    # Keyed as the limiter keys them: an own domain's accounts share one entry, a freemail
    # account has its own (its address); overrides without accounts are listed too.
    sharing: dict[str, list[int]] = {}
    for a in accounts:
        sharing.setdefault(table.sending_domain_key(a), []).append(a.id)
    sharing.update(
        {k: [] for (s, k) in table.overrides if s == "sending_domain" and k not in sharing}
    )
    entries += [("sending_domain", k, table.sending_domain(k)) for k in sorted(sharing)]
    recipient_keys = sorted(k for (s, k) in table.overrides if s == "recipient_domain")
    entries += [("recipient_domain", d, table.recipient_domain(d)) for d in recipient_keys]

    windows: list[Window] = []
    for scope, key, limit in entries:
        windows.append(Window(Scope(scope), key, MINUTE, limit.per_minute or 0))
        windows.append(Window(Scope(scope), key, DAY, limit.per_day or 0))
    used = limiter.used(windows) if windows else []

    result: dict[str, Any] = {scope: [] for scope in SCOPES}
    for index, (scope, key, limit) in enumerate(entries):
        override = table.overrides.get((scope, key))
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
    return {"scopes": result, "defaults": _defaults(table)}


def _defaults(table: LimitTable) -> dict[str, Any]:
    s = table.settings
    return {
        "system_per_minute": s.limit_system_per_minute,
        "account_per_minute": s.limit_account_per_minute,
        "sending_domain_per_day": s.limit_sending_domain_per_day,
        "recipient_domain_per_day": s.limit_recipient_domain_per_day,
        "freemail_per_day": s.limit_freemail_per_day,
        "freemail_domains": list(s.freemail_domains),
    }
