"""Effective rate limits: settings defaults, overridden per (scope, key, client) by the
`limits` table, turned into the limiter's windows for one (account, recipient domain,
campaign) send.

The system scope is the installation's. Every other override is a client's own: its
accounts, its sending domains, the recipient domains it sends to, and its caps (the
`client` scope). A recipient domain's window is per client too: one client's big list to
gmail.com never uses up another client's gmail.com allowance; each client sends from its
own accounts and domains, which is what receiving servers count."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Account, LimitOverride
from app.services import warmup
from app.settings import Settings
from rotator.limiter import Limiter, Scope, Window

MINUTE = 60
DAY = 86400
SYSTEM_KEY = "*"

OverrideKey = tuple[str, str, int | None]  # (scope, key, client_id); system: client None


@dataclass(frozen=True)
class Limit:
    per_minute: int | None
    per_day: int | None


@dataclass(frozen=True)
class LimitTable:
    """A snapshot of every limit in force; the dispatcher loads one per tick."""

    settings: Settings
    overrides: dict[OverrideKey, Limit] = field(default_factory=dict)

    def _override(self, scope: Scope, key: str, client_id: int | None) -> Limit | None:
        return self.overrides.get((scope.value, key, client_id))

    def system(self) -> Limit:
        default = Limit(self.settings.limit_system_per_minute, None)
        return _merge(default, self._override(Scope.SYSTEM, SYSTEM_KEY, None))

    def client(self, client_id: int) -> Limit:
        default = Limit(self.settings.limit_client_per_minute, self.settings.limit_client_per_day)
        return _merge(default, self._override(Scope.CLIENT, str(client_id), client_id))

    def account(self, account: Account) -> Limit:
        cap_today = warmup.cap_today(account, self.settings)
        per_minute = account.per_minute_limit or self.settings.limit_account_per_minute
        override = self._override(Scope.ACCOUNT, str(account.id), account.client_id)
        merged = _merge(Limit(per_minute, cap_today), override)
        # An override may lower the day cap, never lift it past the warm-up ramp.
        per_day = cap_today if merged.per_day is None else min(merged.per_day, cap_today)
        return Limit(merged.per_minute, per_day)

    def sending_domain_key(self, account: Account) -> str:
        return sending_domain_key(account, self.settings)

    def sending_domain(self, key: str, client_id: int) -> Limit:
        """The limit of one sending-domain key. A freemail key (an address) falls back to
        an override of its bare domain: `gmail.com` then sets each account's own window."""
        default = Limit(None, self.settings.limit_sending_domain_per_day)
        override = self._override(Scope.SENDING_DOMAIN, key, client_id)
        if "@" in key:
            bare = self._override(Scope.SENDING_DOMAIN, key.rpartition("@")[2], client_id)
            default = _merge(default, bare)
        return _merge(default, override)

    def recipient_domain(self, domain: str, client_id: int) -> Limit:
        per_day = (
            self.settings.limit_freemail_per_day
            if self.settings.is_freemail(domain)
            else self.settings.limit_recipient_domain_per_day
        )
        override = self._override(Scope.RECIPIENT_DOMAIN, domain, client_id)
        return _merge(Limit(None, per_day), override)

    def windows(
        self,
        *,
        account: Account,
        recipient_domain: str,
        campaign_id: int | None = None,
        campaign_daily_cap: int | None = None,
    ) -> list[Window]:
        """Every window one send must fit in, all reserved at once by the limiter. The
        account's client is the send's (a client's accounts send only its campaigns)."""
        return (
            self.account_windows(account)
            + self.recipient_domain_windows(account.client_id, recipient_domain)
            + self.campaign_windows(campaign_id, campaign_daily_cap)
        )

    def account_windows(self, account: Account) -> list[Window]:
        """The windows every send of this account is in: system, its client, the account
        and its sending domain."""
        client_id = account.client_id
        sending_key = self.sending_domain_key(account)
        own = self.account(account)
        scoped = [
            (Scope.SYSTEM, SYSTEM_KEY, self.system()),
            (Scope.CLIENT, str(client_id), self.client(client_id)),
            (Scope.ACCOUNT, str(account.id), own),
            (Scope.SENDING_DOMAIN, sending_key, self.sending_domain(sending_key, client_id)),
        ]
        windows = [w for scope, key, limit in scoped for w in _windows(scope, key, limit)]
        if self.settings.send_pacing and own.per_minute:
            windows.append(pace_window(account.id, own.per_minute))
        return windows

    def recipient_domain_windows(self, client_id: int, domain: str) -> list[Window]:
        key = recipient_domain_key(client_id, domain)
        return _windows(Scope.RECIPIENT_DOMAIN, key, self.recipient_domain(domain, client_id))

    def campaign_windows(self, campaign_id: int | None, daily_cap: int | None) -> list[Window]:
        if campaign_id is None or daily_cap is None:
            return []
        return _windows(Scope.CAMPAIGN, str(campaign_id), Limit(None, daily_cap))


def pace_window(account_id: int, per_minute: int) -> Window:
    """One send per 60/N seconds: an account limited to N a minute sends evenly across its
    minute instead of N at once (the way outreach tools pace an inbox). A spacing, not a limit
    late sends must keep: counted without the limiter's slack."""
    return Window(Scope.ACCOUNT, str(account_id), MINUTE / per_minute, 1, exact=True)


def make_limiter(redis: Redis, settings: Settings, *, require_epoch: bool = False) -> Limiter:
    """The deployment's limiter: every window counts SEND_SLOT_TOLERANCE_SECONDS on top of its
    span (rotator.limiter), so every process must build it here."""
    return Limiter(
        redis, require_epoch=require_epoch, slack_seconds=settings.send_slot_tolerance_seconds
    )


def recipient_domain_key(client_id: int, domain: str) -> str:
    """The limiter's key of a recipient domain's window: one per client."""
    return f"{client_id}:{domain}"


def sending_domain_key(account: Account, settings: Settings) -> str:
    """The key of the sending-domain scope: the From domain, which protects the operator's
    own domains. A freemail From domain (FREEMAIL_DOMAINS) is no one's own domain: its
    accounts are strangers to each other (two consumer Gmail accounts), so each gets its own
    window, keyed by its lower-cased address (`ann@gmail.com`), which is also what the
    provider counts."""
    if settings.is_freemail(account.sending_domain):
        return account.email.lower()
    return account.sending_domain


def _merge(default: Limit, override: Limit | None) -> Limit:
    if override is None:
        return default
    return Limit(
        override.per_minute if override.per_minute is not None else default.per_minute,
        override.per_day if override.per_day is not None else default.per_day,
    )


def _windows(scope: Scope, key: str, limit: Limit) -> list[Window]:
    windows = []
    if limit.per_minute is not None:
        windows.append(Window(scope, key, MINUTE, limit.per_minute))
    if limit.per_day is not None:
        windows.append(Window(scope, key, DAY, limit.per_day))
    return windows


def load_limits(session: Session, settings: Settings) -> LimitTable:
    rows = session.execute(select(LimitOverride)).scalars()
    return LimitTable(
        settings=settings,
        overrides={(r.scope, r.key, r.client_id): Limit(r.per_minute, r.per_day) for r in rows},
    )


def account_day_window(account: Account, settings: Settings) -> Window:
    cap = warmup.cap_today(account, settings)
    return Window(Scope.ACCOUNT, str(account.id), DAY, cap)
