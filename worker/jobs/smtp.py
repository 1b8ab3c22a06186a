"""The SMTP side of the send path: one connection pool per process, and where each account
connects (its own server, or SANDBOX_SMTP_URL for all)."""

from __future__ import annotations

import os

from flask import current_app

from app.models import Account
from app.services.smtp_endpoints import account_endpoint
from app.settings import Settings
from rotator.transport import SmtpEndpoint, SmtpPool

_pool: SmtpPool | None = None
_pool_pid: int | None = None


def smtp_pool() -> SmtpPool:
    """One pool per process (connections must never cross a fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        settings: Settings = current_app.extensions["settings"]
        _pool = SmtpPool(
            idle_seconds=settings.smtp_idle_seconds,
            max_per_host=settings.smtp_max_connections_per_host,
            max_open=settings.smtp_max_connections,
        )
        _pool_pid = os.getpid()
    return _pool


def endpoint_for(settings: Settings, account: Account) -> SmtpEndpoint:
    return account_endpoint(settings, account, timeout=settings.smtp_timeout_seconds)
