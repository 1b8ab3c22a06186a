"""Sender accounts: create from a provider preset, change, pause and resume, delete; and the
pool state an operator sees (today's cap and what the limiter counted against it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.crypto import SecretBox
from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from app.models import Account, AccountStatus, Event, EventType, Recipient, RecipientStatus
from app.services import warmup
from app.services.clients import owner
from app.services.limits import make_limiter
from app.services.sends import sends_in_last_day
from app.settings import Settings
from rotator.limiter import Scope, Window, WindowsLost
from rotator.providers import ProviderPreset, UnknownProvider, get_preset

log = logging.getLogger(__name__)

DAY_SECONDS = 86400
DEFAULT_PAUSE_REASON = "paused by operator"
NAME_CONSTRAINT = "uq_accounts_client_name"
# Columns shown as they are stored; the secret never is.
_SHOWN = (
    "id", "client_id", "name", "provider", "email", "sending_domain", "from_name", "host", "port",
    "security", "username", "daily_limit", "per_minute_limit", "warmup_day", "warmup_start",
    "warmup_step",
    "warmup_held_at", "warmup_hold_reason", "tags", "status", "paused_reason", "paused_by",
    "pause_details",
    "paused_until", "consecutive_failures", "last_health_check_at", "last_health_ok",
    "last_health_error", "sending_ip", "dkim_selector", "created_at", "updated_at",
)  # fmt: skip


def create_account(
    session: Session, data: Mapping[str, Any], settings: Settings, *, client_id: int | None = None
) -> Account:
    """`data` as AccountCreateSchema loads it; the preset fills what is not given. Without
    `client_id` the account is the default client's."""
    preset = _preset(data["provider"])
    account = Account(
        **owner(client_id),
        name=data["name"],
        provider=preset.name,
        email=data["email"],
        sending_domain=_domain(data["email"]),
        from_name=data.get("from_name") or None,
        host=data.get("host") or preset.host,
        port=data.get("port", preset.port),
        security=data.get("security", preset.security.value),
        daily_limit=data.get("daily_limit", preset.daily_cap),
        per_minute_limit=data.get("per_minute_limit"),
        warmup_enabled=data["warmup"],
        warmup_day=1,
        warmup_start=data.get("warmup_start"),
        warmup_step=data.get("warmup_step"),
        tags=data.get("tags", []),
        sending_ip=data.get("sending_ip"),
        dkim_selector=data.get("dkim_selector"),
        status=AccountStatus.ACTIVE.value,
        consecutive_failures=0,
    )
    password = data.get("password")
    if password:
        account.secret_encrypted = _box(settings).encrypt(password)
    # Gmail, Workspace and most submission servers log in with the address itself.
    default_username = preset.username or (data["email"] if password else None)
    account.username = data.get("username", default_username)
    _check_complete(account, preset)
    session.add(account)
    _flush_unique_name(session, account)
    return account


def update_account(
    session: Session,
    account_id: int,
    data: Mapping[str, Any],
    settings: Settings,
    *,
    client_id: int | None,
) -> Account:
    """`data` as AccountUpdateSchema loads it: only the fields given change."""
    account = get_account(session, account_id, client_id=client_id, for_update=True)
    for key in ("name", "from_name", "host", "port", "security", "username", "daily_limit",
                "per_minute_limit", "tags", "warmup_start", "warmup_step", "sending_ip",
                "dkim_selector"):  # fmt: skip
        if key in data:
            setattr(account, key, data[key])
    if "email" in data:
        account.email = data["email"]
        account.sending_domain = _domain(data["email"])
    if "warmup" in data:
        account.warmup_enabled = data["warmup"]
    if "password" in data:
        password = data["password"]
        account.secret_encrypted = _box(settings).encrypt(password) if password else None
    _check_complete(account, _preset(account.provider))
    _flush_unique_name(session, account)
    return account


def get_account(
    session: Session, account_id: int, *, client_id: int | None, for_update: bool = False
) -> Account:
    """The account, if it is `client_id`'s (any client's when None: the CLI, the jobs).
    Another client's account is "no account", exactly as a missing one."""
    account = session.get(Account, account_id, with_for_update=for_update, populate_existing=True)
    if account is None or (client_id is not None and account.client_id != client_id):
        raise NotFound(f"no account with id {account_id}")
    return account


def list_accounts(session: Session, *, client_id: int) -> list[Account]:
    return list(
        session.execute(
            select(Account).where(Account.client_id == client_id).order_by(Account.id)
        ).scalars()
    )


def delete_account(session: Session, account_id: int, *, client_id: int | None) -> None:
    """Refused while messages are in flight on the account: queued or sending rows still
    need it to send and to record their outcome."""
    account = get_account(session, account_id, client_id=client_id, for_update=True)
    in_flight = session.execute(
        select(func.count())
        .select_from(Recipient)
        .where(
            Recipient.account_id == account_id,
            Recipient.status.in_([RecipientStatus.QUEUED.value, RecipientStatus.SENDING.value]),
        )
    ).scalar_one()
    if in_flight:
        raise Conflict(
            f"account {account_id} has {in_flight} message(s) queued or sending; "
            "pause it and delete it once they are done",
            code="account_busy",
        )
    session.delete(account)
    session.flush()


def pause_account(
    session: Session,
    account_id: int,
    *,
    client_id: int | None,
    reason: str | None,
    until: datetime | None,
) -> Account:
    """active or paused -> paused (pausing again replaces reason and end). A disabled
    account stays disabled until an operator resumes it."""
    get_account(session, account_id, client_id=client_id)
    if until is not None and until <= datetime.now(UTC):
        raise InvalidInput("must be in the future", field="until")
    reason = reason or DEFAULT_PAUSE_REASON
    _transition(
        session,
        account_id,
        allowed=(AccountStatus.ACTIVE, AccountStatus.PAUSED),
        values={
            "status": AccountStatus.PAUSED.value,
            "paused_reason": reason,
            "paused_until": until,
            "paused_by": "operator",
            "pause_details": None,
        },
        refusal="resume it once its credentials are fixed",
    )
    data: dict[str, Any] = {"reason": reason, "source": "api"}
    if until is not None:
        data["until"] = until.isoformat()
    session.add(Event(type=EventType.ACCOUNT_PAUSED.value, account_id=account_id, data=data))
    return get_account(session, account_id, client_id=client_id)


def resume_account(session: Session, account_id: int, *, client_id: int | None) -> Account:
    """paused or disabled -> active, with a clean failure count."""
    get_account(session, account_id, client_id=client_id)
    _transition(
        session,
        account_id,
        allowed=(AccountStatus.PAUSED, AccountStatus.DISABLED),
        values={
            "status": AccountStatus.ACTIVE.value,
            "paused_reason": None,
            "paused_until": None,
            "paused_by": None,
            "pause_details": None,
            "consecutive_failures": 0,
        },
        refusal="it is already active",
    )
    session.add(
        Event(type=EventType.ACCOUNT_RESUMED.value, account_id=account_id, data={"source": "api"})
    )
    return get_account(session, account_id, client_id=client_id)


def with_pool_state(
    session: Session, accounts: Sequence[Account], settings: Settings, redis: Redis
) -> list[dict[str, Any]]:
    """Each account as a dict with `cap_today` and `sent_today`: the limiter's day window
    (one Redis round trip for them all), or, when Redis is down or has lost its windows,
    the same count from the database (app.services.sends), so the figure survives Redis."""
    caps = [warmup.cap_today(a, settings) for a in accounts]
    windows = [
        Window(Scope.ACCOUNT, str(a.id), DAY_SECONDS, cap)
        for a, cap in zip(accounts, caps, strict=True)
    ]
    sent: Sequence[int]
    try:
        sent = make_limiter(redis, settings, require_epoch=True).used(windows)
    except (RedisError, OSError, WindowsLost) as exc:
        log.warning("accounts.usage_from_database", extra={"error": type(exc).__name__})
        counts = sends_in_last_day(session, [a.id for a in accounts], datetime.now(UTC))
        sent = [counts[a.id] for a in accounts]
    return [
        {
            **{key: getattr(a, key) for key in _SHOWN},
            "has_password": a.secret_encrypted is not None,
            "warmup": a.warmup_enabled,
            "cap_today": cap,
            "sent_today": used,
        }
        for a, cap, used in zip(accounts, caps, sent, strict=True)
    ]


def _transition(
    session: Session,
    account_id: int,
    *,
    allowed: tuple[AccountStatus, ...],
    values: dict[str, Any],
    refusal: str,
) -> None:
    # One conditional UPDATE: a concurrent change (the health check, the send path pausing
    # the account) makes it match nothing instead of being overwritten.
    changed = session.execute(
        update(Account)
        .where(Account.id == account_id, Account.status.in_([s.value for s in allowed]))
        .values(**values, updated_at=func.now())
        .returning(Account.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if changed is None:
        status = session.execute(
            select(Account.status).where(Account.id == account_id)
        ).scalar_one_or_none()
        if status is None:
            raise NotFound(f"no account with id {account_id}")
        raise InvalidTransition(f"account {account_id} is {status}: {refusal}")


def _preset(provider: str) -> ProviderPreset:
    try:
        return get_preset(provider)
    except UnknownProvider as exc:
        raise InvalidInput(str(exc.args[0]), field="provider") from None


def _check_complete(account: Account, preset: ProviderPreset) -> None:
    if not account.host:
        raise InvalidInput(f"host is required for provider {preset.name}", field="host")
    if preset.requires_password and account.secret_encrypted is None:
        raise InvalidInput(f"password is required for provider {preset.name}", field="password")


def _flush_unique_name(session: Session, account: Account) -> None:
    # The unique constraint decides (no check-then-insert race); the failed transaction is
    # rolled back by the caller's unit of work when the Conflict propagates.
    name = account.name  # the object is unusable once the flush has failed
    try:
        session.flush()
    except IntegrityError as exc:
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) == NAME_CONSTRAINT:
            raise Conflict(f"an account named {name!r} exists", field="name") from None
        raise


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[1].lower()


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.credentials_key.get_secret_value())
